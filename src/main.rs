fn main() {
    println!("ustack: in progress");
}
