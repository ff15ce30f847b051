fn main() {
    eprintln!("pv-appengine: not implemented yet");
    std::process::exit(2);
}
