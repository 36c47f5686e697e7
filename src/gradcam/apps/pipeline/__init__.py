"""The pipeline: plan a job (:mod:`.job`), the public per-batch step (:mod:`.step`), the local folder engine
(:mod:`.local`) with its manifest and writer threads."""
