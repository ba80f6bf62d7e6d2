"""The foundation every layer uses: errors, where things live (paths), the paper's
vocabulary and reported figures (paper), the run profiles (profiles), the metrics of
the paper (metrics), the software environment (env) and file digests (fingerprint).
"""
