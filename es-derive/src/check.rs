//! The one validation pass over a model: everything that needs several keys, or a key and the
//! item, at once. Each check reports through the context and leaves the model as it was; what
//! the expansion does with an invalid model is `fallback.rs`'s business.

use proc_macro2::Span;

use crate::ast::{Aggregate, Event};
use crate::attr::path_text;
use crate::ctxt::Ctxt;

pub fn event(cx: &Ctxt, event: &Event) {
    let args = &event.args;
    if !args.version.written() && !args.incomplete {
        cx.error_at(Span::call_site(), "missing `version`: write `#[event(version = 1)]`");
    }
    if event.generic() {
        cx.error_spanned_by(
            &event.original.generics,
            "an event cannot be generic: its stored type name and schema must be fixed",
        );
    }
    upcasts(cx, event);
}

/// One kind of upcasting at a time, and a JSON chain without gaps that ends one version below
/// the struct's own.
fn upcasts(cx: &Ctxt, event: &Event) {
    let args = &event.args;
    let Some(version) = args.version.get().copied() else { return };
    if let (Some(key), true) = (args.upcast_json.key(), args.upcast_from.written()) {
        cx.error_at(
            key,
            "`upcast_from` and `upcast_json` cannot be combined: the older struct reads the older versions; \
             put `upcast_json` on that struct instead",
        );
    }
    if version == 1 {
        for key in [args.upcast_from.key(), args.upcast_json.key()].into_iter().flatten() {
            cx.error_at(key, "version 1 has no older version to upcast from; raise `version` first");
        }
        return;
    }
    let Some(steps) = args.upcast_json.get() else { return };
    // Bare functions: suggest the numbering that makes the chain end at `version - 1`.
    let count = u32::try_from(steps.len()).unwrap_or(u32::MAX);
    let first = version.saturating_sub(count).max(1);
    for (index, step) in steps.iter().enumerate().filter(|(_, step)| step.from.is_none()) {
        let n = first + u32::try_from(index).unwrap_or(0);
        let function = path_text(&step.function);
        cx.error_at(
            step.key,
            format!(
                "each upcaster names the version it reads: write `v{n} = {function}` if `{function}` turns version {n}'s JSON into version {}'s",
                n + 1
            ),
        );
    }
    let numbered: Vec<(Span, u32)> = steps.iter().filter_map(|step| step.from.map(|from| (step.key, from))).collect();
    if numbered.len() < steps.len() {
        return;
    }
    for (key, from) in numbered.iter().filter(|(_, from)| *from >= version) {
        cx.error_at(
            *key,
            format!(
                "`v{from}` is not older than this event's version {version}; upcasters read versions 1 to {}",
                version - 1
            ),
        );
    }
    let older: Vec<&(Span, u32)> = numbered.iter().filter(|(_, from)| *from < version).collect();
    if let Some((key, newest)) = older.last()
        && *newest != version - 1
    {
        cx.error_at(
            *key,
            format!(
                "the chain stops at version {}, but this event is version {version}: add `v{} = …` to turn version {} into {version}",
                newest + 1,
                version - 1,
                version - 1
            ),
        );
    }
    for pair in older.windows(2) {
        let ((_, before), (key, after)) = (pair[0], pair[1]);
        if *after != before + 1 {
            cx.error_at(
                *key,
                format!(
                    "the chain skips version {}: add `v{} = …` between `v{before}` and `v{after}`",
                    before + 1,
                    before + 1
                ),
            );
        }
    }
}

pub fn aggregate(cx: &Ctxt, aggregate: &Aggregate) {
    let input = aggregate.original;
    if let syn::Data::Union(data) = &input.data {
        cx.error_spanned_by(
            data.union_token,
            "`#[derive(Aggregate)]` needs a struct or an enum: the aggregate's state",
        );
        return;
    }
    if aggregate.generic() {
        cx.error_spanned_by(
            &input.generics,
            "an aggregate cannot be generic: its stream type and events must be fixed",
        );
        return;
    }
    let args = &aggregate.args;
    // Without `#[aggregate]`, or after a syntax error in it, keys may be absent only because
    // they were never read: they are not reported missing.
    let Some(attribute) = aggregate.attribute else {
        cx.error_at(
            Span::call_site(),
            "`#[derive(Aggregate)]` needs `#[aggregate(id = Uuid, events(AccountOpened, ...))]` below it",
        );
        return;
    };
    if !args.incomplete {
        if !args.id.written() {
            cx.error_spanned_by(
                attribute,
                "missing `id` in `#[aggregate(...)]`: write `id = Uuid` (the type that identifies one aggregate)",
            );
        }
        if !args.events.written() {
            cx.error_spanned_by(
                attribute,
                "missing `events(...)` in `#[aggregate(...)]`: list the events it applies, \
                 `events(AccountOpened, MoneyDeposited)`",
            );
        }
    }
    event_list(cx, aggregate);
}

/// Each event once, each variant name once, no generic arguments.
fn event_list(cx: &Ctxt, aggregate: &Aggregate) {
    let events = &aggregate.events.events;
    for (index, event) in events.iter().enumerate() {
        let earlier = &events[..index];
        if let Some(first) = earlier.iter().find(|e| e.text == event.text) {
            cx.error_spanned_by(&event.path, format!("`{}` is listed twice in `events(...)`", event.text));
            cx.error_spanned_by(&first.path, "listed first here");
        } else if let Some(first) = earlier.iter().find(|e| e.variant == event.variant) {
            let (variant, enum_name) = (&event.variant, &aggregate.enum_name);
            cx.error_spanned_by(
                &event.path,
                format!(
                    "`{}` and `{}` would both be the variant `{variant}` of `{enum_name}`: name one of them, \
                     `events({} as Other{variant}, ...)`",
                    first.text, event.text, event.text
                ),
            );
        } else if event.path.segments.last().is_some_and(|last| !last.arguments.is_none()) {
            cx.error_spanned_by(&event.path, "an event in `events(...)` cannot take generic arguments");
        }
    }
}
