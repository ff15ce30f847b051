fn main() {
    todo!("core issue")
}
