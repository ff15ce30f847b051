//! `drm` mediation: validate the provider's node (char device, major 226,
//! resolved inside the provider's root) and mknod it into the consumer.
