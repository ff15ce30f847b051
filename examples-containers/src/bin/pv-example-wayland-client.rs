//! `pv-example-wayland-client`: see [`pv_examples::wayland_client`].

fn main() {
    pv_examples::wayland_client::main()
}
