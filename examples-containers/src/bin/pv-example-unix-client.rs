//! `pv-example-unix-client`: see [`pv_examples::unix_client`].

fn main() {
    pv_examples::unix_client::main()
}
