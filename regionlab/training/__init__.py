"""Training recipes of the bundled ShapesWorld models (CLIP, captioner, generator).

Each ``train_*`` module is a command (``python -m regionlab.training.train_clip ...``);
``recipe`` re-runs the commands recorded next to the weights in ``assets/models/``,
``tolerance`` checks a re-trained CLIP against the shipped one, ``provenance`` records what a
run ran on and ``decoder_data`` builds the decoders' training data. The modules use the world
(``regionlab.shapes``) and the library; the library never imports them
(``tests/test_layering.py`` checks it).
"""
