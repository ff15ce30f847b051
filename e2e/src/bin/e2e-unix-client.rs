//! `pv-example-unix-client`, built here for this crate's tests (see [`pv_examples::unix_client`]).

fn main() {
    pv_examples::unix_client::main()
}
