//! Graph sources: the pv-ctrl HTTP client and the `--graph-file` watcher.
