//! Parses ContextQL from the arguments (or standard input) and prints the AST or the error:
//!
//! ```text
//! cargo run -p contextql --example parse -- "MATCH (n:Package) RETURN n.name"
//! echo "RETURN 1 +" | cargo run -p contextql --example parse
//! ```

use std::io::Read;

fn main() {
    let mut inputs: Vec<String> = std::env::args().skip(1).collect();
    if inputs.is_empty() {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("cannot read standard input: {e}");
            std::process::exit(2);
        }
        inputs.push(text);
    }
    let mut failed = false;
    for text in &inputs {
        match contextql::parse(text) {
            Ok(script) => println!("{script:#?}"),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    std::process::exit(i32::from(failed));
}
