"""Models people can use: a run's networks exported as one self-describing file
(modelfile), predictions on any radiograph (predict) and an evaluation on labelled
images from elsewhere (evaluate).
"""
