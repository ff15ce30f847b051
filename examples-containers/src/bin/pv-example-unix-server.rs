//! `pv-example-unix-server`: see [`pv_examples::unix_server`].

fn main() -> anyhow::Result<()> {
    pv_examples::unix_server::main()
}
