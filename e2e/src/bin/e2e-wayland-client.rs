//! `pv-example-wayland-client`, built here for this crate's tests (see [`pv_examples::wayland_client`]).

fn main() {
    pv_examples::wayland_client::main()
}
