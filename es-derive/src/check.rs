//! Checks that need several keys at once. Each reports through the context and leaves the
//! model usable, so the expansion still runs and no follow-on errors appear.

use syn::Path;

use crate::attr::{EventArgs, JsonStep, path_text};
use crate::ctxt::Ctxt;

/// The upcasting keys of `#[event]`: one kind at a time, and a chain without gaps that ends
/// one version below the struct's own.
pub fn event_upcasts(cx: &mut Ctxt, args: &EventArgs, version: u32) {
    if let (Some(key), Some(_)) = (args.upcast_json.key(), args.upcast_from.get()) {
        cx.error(
            key.clone(),
            "`upcast_from` and `upcast_json` cannot be combined: the older struct reads the older versions; \
             put `upcast_json` on that struct instead",
        );
    }
    if version == 1 {
        for key in [args.upcast_from.key(), args.upcast_json.key()].into_iter().flatten() {
            cx.error(key.clone(), "version 1 has no older version to upcast from; raise `version` first");
        }
        return;
    }
    if let Some(steps) = args.upcast_json.get() {
        json_chain(cx, steps, version);
    }
}

fn json_chain(cx: &mut Ctxt, steps: &[JsonStep], version: u32) {
    for step in steps.iter().filter(|step| step.from >= version) {
        cx.error(
            &step.key,
            format!(
                "`v{}` is not older than this event's version {version}; upcasters read versions 1 to {}",
                step.from,
                version - 1
            ),
        );
    }
    let older: Vec<&JsonStep> = steps.iter().filter(|step| step.from < version).collect();
    if let Some(newest) = older.last()
        && newest.from != version - 1
    {
        cx.error(
            &newest.key,
            format!(
                "the chain stops at version {}, but this event is version {version}: add `v{} = …` to turn version {} into {version}",
                newest.from + 1,
                version - 1,
                version - 1
            ),
        );
    }
    for pair in older.windows(2) {
        if pair[1].from != pair[0].from + 1 {
            cx.error(
                &pair[1].key,
                format!(
                    "the chain skips version {}: add `v{} = …` between `v{}` and `v{}`",
                    pair[0].from + 1,
                    pair[0].from + 1,
                    pair[0].from,
                    pair[1].from
                ),
            );
        }
    }
}

/// `events(...)` of `#[aggregate]`: each event once, and no two with the same last name (the
/// enum's variants are named after it). Returns the events to expand, duplicates dropped.
pub fn aggregate_events(cx: &mut Ctxt, events: &[Path]) -> Vec<Path> {
    let mut kept: Vec<Path> = Vec::new();
    for event in events {
        let Some(last) = event.segments.last() else { continue };
        if let Some(first) = kept.iter().find(|k| path_text(k) == path_text(event)) {
            cx.error(event, format!("`{}` is listed twice in `events(...)`", path_text(event)));
            cx.error(first, "listed first here");
            continue;
        }
        if let Some(first) = kept.iter().find(|k| k.segments.last().is_some_and(|l| l.ident == last.ident)) {
            cx.error(
                event,
                format!(
                    "`{}` and `{}` would both be the variant `{}` of the event enum; rename one of the structs",
                    path_text(first),
                    path_text(event),
                    last.ident
                ),
            );
            continue;
        }
        if !last.arguments.is_none() {
            cx.error(event, "an event in `events(...)` cannot take generic arguments");
            continue;
        }
        kept.push(event.clone());
    }
    kept
}
