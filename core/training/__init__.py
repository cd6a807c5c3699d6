"""Training schedule for the late-fusion model.

Phases (each resumable from ``<run_dir>/last.pt``):

1. ``image``    - only when the image encoder starts from scratch (``--image-weights none``):
                  DenseNet-121 + image head + auxiliary MeSH heads on augmented images;
                  the whole cosine schedule runs, validated on a moving average of the weights.
2. ``frozen``   - both encoders frozen; their features are computed once and cached, and
                  the text and fusion heads train on the cache (modality dropout, text mode
                  drawn per sample from report / indication / none); the image head too
                  when no image phase ran.
3. ``unfrozen`` - the text encoder (and the image encoder when it was pretrained) trains
                  with lower learning rates than the heads (differential learning rates).

Then late-fusion weights, temperature scaling and thresholds are fitted on validation. Early
stopping on validation macro AUC in the frozen and unfrozen phases; every phase keeps its
best validated state.

The package, by concern: ``config`` (TrainConfig, its command-line flags, split files),
``distributed`` (the process: rank, device; shards, seeds), ``nets`` (what each phase trains),
``setup`` (the checkpoint, the run's data, its model), ``loops`` (the epoch loop, loss, schedule),
``phases`` (each phase as a ``Phase`` the loop runs), ``validation`` (feature caches, validation
AUCs) and ``temperature_scaling`` (late fusion, temperatures, thresholds on validation);
``trainer.Trainer`` composes them, handing each part what it needs. ``cross_validation``: the
k-fold recipe of scripts/cv.py. After training: ``outputs`` (evaluation files and the guard next
to new weights), and the run log (``run_log``, ``run_log_export``, ``monitor_frames``: torch-free,
read by the training monitor).

May import: ``core.evaluation``, ``core.model``, ``core.data``, ``core.errors``; never ``core.serving``.
"""
