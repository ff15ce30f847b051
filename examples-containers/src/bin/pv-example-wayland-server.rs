//! `pv-example-wayland-server`: see [`pv_examples::wayland_server`].

fn main() -> anyhow::Result<()> {
    pv_examples::wayland_server::main()
}
