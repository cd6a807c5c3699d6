"""PACS: DICOMweb in, DICOM SR out — score the chest X-rays where they live.

    from core.pacs.connection import Pacs, connect
    pacs = connect("http://orthanc:8042/dicom-web")       # credentials from CXR_PACS_USER/_PASSWORD or ~/.netrc
    report = run(pacs, predictor, store, studies=pacs.find_studies(since="20261201"))   # core.pacs.run

The package, by concern: ``connection`` (the DICOMweb client: QIDO-RS to find studies, WADO-RS to
fetch them, STOW-RS to store; credentials from the environment, never argv; HTTP failures as one
line of ``PacsError``), ``studies`` (which studies are CR/DX chests, which image is the frontal,
the indication read from the DICOM), ``sr`` (the Comprehensive SR, TID 1500 through highdicom,
and reading an SR's algorithm back), ``ledger`` (the prediction log's row, written once per study
and model version) and ``run`` (one pass over studies: find, fetch, decode, predict, SR, log).

Exactly once: a study is "done" for a model when the PACS holds an SR of ours whose algorithm
version is the weights' version (a "+int8" serving suffix not compared) at the operating point asked
for; the SR's instance UID is derived from (study, a digest of what it says, which names the model as
served and the operating point), so a re-store after a crash replaces nothing and adds nothing, and
one UID never holds two contents; the log row is written after the SR, keyed on (study, version),
and a re-run writes a missing one. What the SR says is the one policy's decisions
(core.serving.decision): nothing in this package decides a flag.

May import: ``core.serving``, ``core.store``, ``core.evaluation``, ``core.model``, ``core.data``,
``core.errors``. Never streamlit.
"""
