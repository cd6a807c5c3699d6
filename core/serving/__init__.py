"""Serving: a trained model answering users.

Owns the predictor (``predictor``, the coordinator, over ``loading``, ``graphs`` with its
states in ``precision``, ``batch_predict`` and ``attribution``; what it returns in
``prediction``), predict-and-log (``predict_and_log``), batch uploads and sharded batch files (``batch_uploads``,
``sharded_batch``), the int8 calibration of the served image encoder (``int8_calibration``),
sharing over ngrok (``sharing``) and the app's collector pause (``gc_pause``).

May import: ``core.store``, ``core.evaluation``, ``core.model``, ``core.data``, ``core.errors``.
Never ``core.training``; never streamlit.
"""
