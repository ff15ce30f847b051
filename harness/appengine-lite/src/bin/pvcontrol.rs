fn main() {
    eprintln!("pvcontrol: not implemented yet");
    std::process::exit(2);
}
