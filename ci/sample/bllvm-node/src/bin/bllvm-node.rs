//! The sample node binary.

fn main() {
    println!("{}", bllvm_node::status(0));
}
