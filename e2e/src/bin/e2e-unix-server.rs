//! `pv-example-unix-server`, built here for this crate's tests (see [`pv_examples::unix_server`]).

fn main() -> anyhow::Result<()> {
    pv_examples::unix_server::main()
}
