//! The one validation pass over a model: everything that needs several keys, or a key and the
//! item, at once. Each check reports through the context and leaves the model as it was; what
//! the expansion does with an invalid model is `fallback.rs`'s business.

use proc_macro2::Span;

use crate::ast::{Aggregate, Event, Projection};
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
        if let Some(stream) = &event.stream {
            cx.error_spanned_by(
                stream,
                "`in Aggregate` is for projections, which read events of several aggregates; an aggregate's events are its own",
            );
        }
        if let Some(first) = earlier.iter().find(|e| e.text == event.text) {
            let message = match (first.retired, event.retired) {
                (false, true) => format!(
                    "`{}` is listed in both `events(...)` and `retired(...)`: keep it in `retired(...)` only, if commands must no longer emit it",
                    event.text
                ),
                (true, true) => format!("`{}` is listed twice in `retired(...)`", event.text),
                _ => format!("`{}` is listed twice in `events(...)`", event.text),
            };
            cx.error_spanned_by(&event.path, message);
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

pub fn projection(cx: &Ctxt, projection: &Projection) {
    let input = projection.original;
    if projection.generic() {
        cx.error_spanned_by(&input.generics, "a projection cannot be generic: its name and events must be fixed");
        return;
    }
    let Some(attribute) = projection.attribute else {
        cx.error_at(
            Span::call_site(),
            "`#[derive(Projection)]` needs `#[projection(name = \"balances\", events(AccountOpened, ...))]` below it",
        );
        return;
    };
    if !projection.args.incomplete && !projection.args.events.written() {
        cx.error_spanned_by(
            attribute,
            "missing `events(...)` in `#[projection(...)]`: list the events it handles, \
             `events(AccountOpened, MoneyDeposited)`",
        );
    }
    let events = &projection.events.events;
    for (index, event) in events.iter().enumerate() {
        let stream = event.stream.as_ref().map(path_text);
        if let Some(first) =
            events[..index].iter().find(|e| e.text == event.text && e.stream.as_ref().map(path_text) == stream)
        {
            let listed = match &stream {
                Some(stream) => format!("`{} in {stream}`", event.text),
                None => format!("`{}`", event.text),
            };
            cx.error_spanned_by(&event.path, format!("{listed} is listed twice in `events(...)`"));
            cx.error_spanned_by(&first.path, "listed first here");
        } else if event.path.segments.last().is_some_and(|last| !last.arguments.is_none()) {
            cx.error_spanned_by(&event.path, "an event in `events(...)` cannot take generic arguments");
        }
    }
}

#[cfg(test)]
mod tests {
    use proc_macro2::TokenStream;
    use quote::quote;

    use crate::ast;
    use crate::attr::{parse_aggregate_args, parse_event_args};
    use crate::ctxt::Ctxt;

    fn messages(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn event_errors(args: TokenStream, item: TokenStream) -> Vec<String> {
        let cx = Ctxt::new();
        let args = parse_event_args(&cx, args);
        let item: syn::ItemStruct = syn::parse2(item).unwrap_or_else(|e| panic!("{e}"));
        let model = ast::Event::from_syn(args, &item);
        super::event(&cx, &model);
        messages(cx)
    }

    fn aggregate_errors(input: TokenStream) -> Vec<String> {
        let cx = Ctxt::new();
        let input: syn::DeriveInput = syn::parse2(input).unwrap_or_else(|e| panic!("{e}"));
        let args = parse_aggregate_args(&cx, &input.attrs);
        let model = ast::Aggregate::from_syn(args, &input);
        super::aggregate(&cx, &model);
        messages(cx)
    }

    #[test]
    fn a_valid_event_has_no_errors() {
        assert!(
            event_errors(
                quote!(version = 3, upcast_json(v1 = a, v2 = b)),
                quote!(
                    struct E {}
                )
            )
            .is_empty()
        );
        assert!(
            event_errors(
                quote!(version = 2, upcast_from = Old),
                quote!(
                    struct E {}
                )
            )
            .is_empty()
        );
    }

    #[test]
    fn a_missing_version_is_reported_unless_parsing_stopped() {
        assert_eq!(
            event_errors(
                quote!(name = "E"),
                quote!(
                    struct E {}
                )
            ),
            ["missing `version`: write `#[event(version = 1)]`"]
        );
        // `version 1` is a syntax error: the keys after it were never read.
        assert_eq!(
            event_errors(
                quote!(name = "E" version = 1),
                quote!(
                    struct E {}
                )
            ),
            ["expected `,`"]
        );
    }

    #[test]
    fn bare_upcasters_are_numbered_to_end_below_the_version() {
        assert_eq!(
            event_errors(
                quote!(version = 3, upcast_json(a, b)),
                quote!(
                    struct E {}
                )
            ),
            [
                "each upcaster names the version it reads: write `v1 = a` if `a` turns version 1's JSON into version 2's",
                "each upcaster names the version it reads: write `v2 = b` if `b` turns version 2's JSON into version 3's",
            ]
        );
    }

    #[test]
    fn a_json_chain_must_be_whole() {
        assert_eq!(
            event_errors(
                quote!(version = 4, upcast_json(v1 = a, v3 = c)),
                quote!(
                    struct E {}
                )
            ),
            ["the chain skips version 2: add `v2 = …` between `v1` and `v3`"]
        );
        assert_eq!(
            event_errors(
                quote!(version = 3, upcast_json(v1 = a)),
                quote!(
                    struct E {}
                )
            ),
            ["the chain stops at version 2, but this event is version 3: add `v2 = …` to turn version 2 into 3"]
        );
        assert_eq!(
            event_errors(
                quote!(version = 2, upcast_json(v1 = a, v2 = b)),
                quote!(
                    struct E {}
                )
            ),
            ["`v2` is not older than this event's version 2; upcasters read versions 1 to 1"]
        );
    }

    #[test]
    fn upcasting_needs_an_older_version_and_one_kind() {
        assert_eq!(
            event_errors(
                quote!(version = 1, upcast_from = Old),
                quote!(
                    struct E {}
                )
            ),
            ["version 1 has no older version to upcast from; raise `version` first"]
        );
        assert_eq!(
            event_errors(
                quote!(version = 2, upcast_from = Old, upcast_json(v1 = a)),
                quote!(
                    struct E {}
                )
            ),
            [
                "`upcast_from` and `upcast_json` cannot be combined: the older struct reads the older versions; put `upcast_json` on that struct instead"
            ]
        );
    }

    #[test]
    fn a_generic_event_is_refused() {
        assert_eq!(
            event_errors(
                quote!(version = 1),
                quote!(
                    struct E<T> {
                        t: T,
                    }
                )
            ),
            ["an event cannot be generic: its stored type name and schema must be fixed"]
        );
    }

    #[test]
    fn an_aggregate_reports_every_missing_key_and_list_mistake() {
        assert_eq!(
            aggregate_errors(quote!(
                #[aggregate()]
                struct A {}
            )),
            [
                "missing `id` in `#[aggregate(...)]`: write `id = Uuid` (the type that identifies one aggregate)",
                "missing `events(...)` in `#[aggregate(...)]`: list the events it applies, `events(AccountOpened, MoneyDeposited)`",
            ]
        );
        assert_eq!(
            aggregate_errors(quote!(
                #[aggregate(id = u64, events(a::E, b::E, a::E))]
                struct A {}
            )),
            [
                "`a::E` and `b::E` would both be the variant `E` of `AEvent`: name one of them, `events(b::E as OtherE, ...)`",
                "`a::E` is listed twice in `events(...)`",
                "listed first here",
            ]
        );
        assert!(
            aggregate_errors(quote!(
                #[aggregate(id = u64, events(a::E, b::E as F))]
                struct A {}
            ))
            .is_empty()
        );
    }

    #[test]
    fn a_retired_event_is_listed_once() {
        assert_eq!(
            aggregate_errors(quote!(
                #[aggregate(id = u64, events(A, B), retired(B, C, C))]
                struct X {}
            )),
            [
                "`B` is listed in both `events(...)` and `retired(...)`: keep it in `retired(...)` only, if commands must no longer emit it",
                "listed first here",
                "`C` is listed twice in `retired(...)`",
                "listed first here",
            ]
        );
        assert_eq!(
            aggregate_errors(quote!(
                #[aggregate(id = u64, events(A), retired())]
                struct X {}
            )),
            ["`retired(...)` is empty; list the events that stay readable but are no longer emitted, or remove it"]
        );
    }

    #[test]
    fn an_aggregate_without_its_attribute_says_what_to_write() {
        assert_eq!(
            aggregate_errors(quote!(
                struct A {}
            )),
            ["`#[derive(Aggregate)]` needs `#[aggregate(id = Uuid, events(AccountOpened, ...))]` below it"]
        );
    }
}
