//! Writes the schema docs of the bank domain into a folder: `events.md` (Markdown),
//! `events.asyncapi.json` (AsyncAPI 3.0) and one JSON Schema per event version under
//! `json-schema/`.
//!
//! Run with `cargo run --example schema_docs -- docs/`.

// The domain's commands are used by the other example; here only its schema is.
#[allow(dead_code)]
#[path = "bank_account/domain.rs"]
mod domain;

use std::path::PathBuf;

use domain::BankAccount;
use es::schema::{System, asyncapi, json_schema, markdown};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "docs".to_owned()));
    let system = System::of::<(BankAccount,)>("the bank");

    std::fs::create_dir_all(dir.join("json-schema"))?;
    std::fs::write(dir.join("events.md"), markdown::render(&system))?;
    let document = asyncapi::render(&system, env!("CARGO_PKG_VERSION"));
    std::fs::write(dir.join("events.asyncapi.json"), serde_json::to_string_pretty(&document)? + "\n")?;
    let schemas = json_schema::system(&system);
    for schema in &schemas {
        let path = dir.join("json-schema").join(&schema.file_name);
        std::fs::write(path, serde_json::to_string_pretty(&schema.schema)? + "\n")?;
    }
    println!(
        "wrote {} (Markdown), {} (AsyncAPI 3.0) and {} JSON Schemas in {}",
        dir.join("events.md").display(),
        dir.join("events.asyncapi.json").display(),
        schemas.len(),
        dir.join("json-schema").display()
    );
    Ok(())
}
