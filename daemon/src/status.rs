//! The status socket and the `pv-xconnect status` client.
