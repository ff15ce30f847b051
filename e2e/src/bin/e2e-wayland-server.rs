//! `pv-example-wayland-server`, built here for this crate's tests (see [`pv_examples::wayland_server`]).

fn main() -> anyhow::Result<()> {
    pv_examples::wayland_server::main()
}
