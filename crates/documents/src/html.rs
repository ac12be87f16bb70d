//! The HTML templates: files under `templates/`, compiled into the binary, rendered with minijinja.
//!
//! Every template name ends in `.html`, so minijinja escapes every value; undefined variables are errors, so
//! a document never goes out with a hole.

use std::sync::OnceLock;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::DocumentError;

const TEMPLATES: [(&str, &str); 3] = [
    ("base.html", include_str!("../templates/base.html")),
    ("defense.html", include_str!("../templates/defense.html")),
    ("case_file.html", include_str!("../templates/case_file.html")),
];

fn environment() -> Result<&'static Environment<'static>, DocumentError> {
    static ENV: OnceLock<Result<Environment<'static>, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(env)
    })
    .as_ref()
    .map_err(|e| DocumentError::Template(e.clone()))
}

pub(crate) fn render(name: &str, view: &impl Serialize) -> Result<String, DocumentError> {
    let env = environment()?;
    let template = env
        .get_template(name)
        .map_err(|e| DocumentError::Template(format!("{name}: {e}")))?;
    template
        .render(minijinja::Value::from(minijinja::value::Serde(view)))
        .map_err(|e| DocumentError::Template(format!("{name}: {e}")))
}
