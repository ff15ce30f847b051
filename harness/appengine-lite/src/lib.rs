//! appengine-lite: a minimal Pantavisor-compatible appengine for tests.
