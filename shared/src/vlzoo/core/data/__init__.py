"""Data: image transforms now; sources, shards and the toyworld generator live here too."""
