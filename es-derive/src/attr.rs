//! Parsing of `#[event(...)]` and `#[aggregate(...)]`. Every key is read even after an error: a
//! bad value is reported and skipped up to the next `,`, a duplicate key says where the first
//! one was, and an unknown key lists the valid ones.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Ident, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

/// One helper-attribute key: whether it was written (and where), and its value when that
/// value was valid.
pub struct Attr<T> {
    name: &'static str,
    key: Option<Span>,
    value: Option<T>,
}

impl<T> Attr<T> {
    pub fn none(name: &'static str) -> Self {
        Self { name, key: None, value: None }
    }

    /// Records the key; `value` is `None` when its value was wrong (already reported).
    fn set(&mut self, cx: &Ctxt, key: &Path, value: Option<T>) {
        if let Some(first) = self.key {
            cx.error_spanned_by(key, format!("duplicate `{}`", self.name));
            cx.error_at(first, format!("the first `{}` is here", self.name));
        } else {
            self.key = Some(key.span());
            self.value = value;
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// Where the key was written, valid or not.
    pub fn key(&self) -> Option<Span> {
        self.key
    }

    pub fn written(&self) -> bool {
        self.key.is_some()
    }

    pub fn into_value(self) -> Option<T> {
        self.value
    }
}

/// One entry of `upcast_json(...)`: `vN = function`, or a bare `function` (reported by the
/// checks, which know the event's version and so what to suggest).
pub struct JsonStep {
    /// The `vN` key, or the function itself when it had none.
    pub key: Span,
    /// N, for `vN = function`.
    pub from: Option<u32>,
    pub function: Path,
}

pub struct EventArgs {
    pub version: Attr<u32>,
    pub name: Attr<LitStr>,
    pub aliases: Attr<Vec<LitStr>>,
    pub upcast_from: Attr<Path>,
    pub upcast_json: Attr<Vec<JsonStep>>,
    pub krate: Attr<Path>,
    /// A syntax error between keys stopped parsing: the keys after it were not read, so none
    /// of them is reported missing.
    pub incomplete: bool,
}

const EVENT_KEYS: &str = "`version`, `name`, `aliases`, `upcast_from`, `upcast_json`, `crate`";

pub fn parse_event_args(cx: &Ctxt, args: TokenStream) -> EventArgs {
    let mut out = EventArgs {
        version: Attr::none("version"),
        name: Attr::none("name"),
        aliases: Attr::none("aliases"),
        upcast_from: Attr::none("upcast_from"),
        upcast_json: Attr::none("upcast_json"),
        krate: Attr::none("crate"),
        incomplete: false,
    };
    let parser = syn::meta::parser(|meta| {
        let key = meta.path.clone();
        if key.is_ident("version") {
            let value = recover(cx, &meta, parse_version);
            out.version.set(cx, &key, value);
        } else if key.is_ident("name") {
            let value = recover(cx, &meta, parse_name);
            out.name.set(cx, &key, value);
        } else if key.is_ident("aliases") {
            let value = recover(cx, &meta, |meta| parse_aliases(cx, meta));
            out.aliases.set(cx, &key, value);
        } else if key.is_ident("upcast_from") {
            let value = recover(cx, &meta, |meta| meta.value()?.parse::<Path>());
            out.upcast_from.set(cx, &key, value);
        } else if key.is_ident("upcast_json") {
            let value = recover(cx, &meta, |meta| parse_json_steps(cx, meta));
            out.upcast_json.set(cx, &key, value);
        } else if key.is_ident("crate") {
            let value = recover(cx, &meta, parse_crate);
            out.krate.set(cx, &key, value);
        } else {
            cx.error_spanned_by(
                &key,
                format!("unknown key `{}` in `#[event]`; expected one of {EVENT_KEYS}", path_text(&key)),
            );
            skip_to_comma(meta.input);
        }
        Ok(())
    });
    if let Err(error) = parser.parse2(args) {
        cx.push(error);
        out.incomplete = true;
    }
    out
}

pub struct SnapshotArgs {
    pub every: u64,
    pub version: u32,
}

/// One entry of `events(...)`: `path::To::Event`, optionally `in Aggregate` (projections:
/// only records of that aggregate's streams) and `as Variant` (aggregates: the enum's variant).
pub struct ListedArg {
    pub path: Path,
    pub stream: Option<Path>,
    pub variant: Option<Ident>,
}

pub struct AggregateArgs {
    pub id: Attr<Type>,
    pub events: Attr<Vec<ListedArg>>,
    /// `retired(...)`: events still read from stored history that commands no longer emit.
    pub retired: Attr<Vec<ListedArg>>,
    pub error: Attr<Type>,
    pub snapshot: Attr<SnapshotArgs>,
    pub event_enum: Attr<Ident>,
    pub name: Attr<LitStr>,
    pub krate: Attr<Path>,
    /// As in [`EventArgs::incomplete`].
    pub incomplete: bool,
}

const AGGREGATE_KEYS: &str = "`id`, `events`, `retired`, `error`, `snapshot`, `event_enum`, `name`, `crate`";

pub fn parse_aggregate_args(cx: &Ctxt, attrs: &[syn::Attribute]) -> AggregateArgs {
    let mut out = AggregateArgs {
        id: Attr::none("id"),
        events: Attr::none("events"),
        retired: Attr::none("retired"),
        error: Attr::none("error"),
        snapshot: Attr::none("snapshot"),
        event_enum: Attr::none("event_enum"),
        name: Attr::none("name"),
        krate: Attr::none("crate"),
        incomplete: false,
    };
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("aggregate")) {
        // `#[aggregate()]`: nothing to read (syn would report "unexpected end of input").
        if matches!(&attr.meta, syn::Meta::List(list) if list.tokens.is_empty()) {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            if key.is_ident("id") {
                let value = recover(cx, &meta, |meta| meta.value()?.parse::<Type>());
                out.id.set(cx, &key, value);
            } else if key.is_ident("events") {
                let value = recover(cx, &meta, parse_events);
                if value.as_ref().is_some_and(Vec::is_empty) {
                    cx.error_spanned_by(
                        &key,
                        "`events(...)` is empty; list the events this aggregate applies: `events(AccountOpened, MoneyDeposited)`",
                    );
                }
                out.events.set(cx, &key, value);
            } else if key.is_ident("retired") {
                let value = recover(cx, &meta, parse_events);
                if value.as_ref().is_some_and(Vec::is_empty) {
                    cx.error_spanned_by(
                        &key,
                        "`retired(...)` is empty; list the events that stay readable but are no longer emitted, or remove it",
                    );
                }
                out.retired.set(cx, &key, value);
            } else if key.is_ident("error") {
                let value = recover(cx, &meta, |meta| meta.value()?.parse::<Type>());
                out.error.set(cx, &key, value);
            } else if key.is_ident("snapshot") {
                let value = recover(cx, &meta, |meta| parse_snapshot(cx, meta));
                out.snapshot.set(cx, &key, value);
            } else if key.is_ident("event_enum") {
                let value = recover(cx, &meta, |meta| meta.value()?.parse::<Ident>());
                out.event_enum.set(cx, &key, value);
            } else if key.is_ident("name") {
                let value = recover(cx, &meta, parse_name);
                out.name.set(cx, &key, value);
            } else if key.is_ident("crate") {
                let value = recover(cx, &meta, parse_crate);
                out.krate.set(cx, &key, value);
            } else {
                cx.error_spanned_by(
                    &key,
                    format!("unknown key `{}` in `#[aggregate]`; expected one of {AGGREGATE_KEYS}", path_text(&key)),
                );
                skip_to_comma(meta.input);
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.push(error);
            out.incomplete = true;
        }
    }
    out
}

pub struct ProjectionArgs {
    pub name: Attr<LitStr>,
    pub version: Attr<u32>,
    pub events: Attr<Vec<ListedArg>>,
    pub krate: Attr<Path>,
    /// As in [`EventArgs::incomplete`].
    pub incomplete: bool,
}

const PROJECTION_KEYS: &str = "`name`, `version`, `events`, `crate`";

pub fn parse_projection_args(cx: &Ctxt, attrs: &[syn::Attribute]) -> ProjectionArgs {
    let mut out = ProjectionArgs {
        name: Attr::none("name"),
        version: Attr::none("version"),
        events: Attr::none("events"),
        krate: Attr::none("crate"),
        incomplete: false,
    };
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("projection")) {
        if matches!(&attr.meta, syn::Meta::List(list) if list.tokens.is_empty()) {
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta.path.clone();
            if key.is_ident("name") {
                let value = recover(cx, &meta, parse_name);
                out.name.set(cx, &key, value);
            } else if key.is_ident("version") {
                let value = recover(cx, &meta, parse_version);
                out.version.set(cx, &key, value);
            } else if key.is_ident("events") {
                let value = recover(cx, &meta, parse_events);
                if value.as_ref().is_some_and(Vec::is_empty) {
                    cx.error_spanned_by(
                        &key,
                        "`events(...)` is empty; list the events this projection handles: `events(AccountOpened, MoneyDeposited)`",
                    );
                }
                out.events.set(cx, &key, value);
            } else if key.is_ident("crate") {
                let value = recover(cx, &meta, parse_crate);
                out.krate.set(cx, &key, value);
            } else {
                cx.error_spanned_by(
                    &key,
                    format!("unknown key `{}` in `#[projection]`; expected one of {PROJECTION_KEYS}", path_text(&key)),
                );
                skip_to_comma(meta.input);
            }
            Ok(())
        });
        if let Err(error) = result {
            cx.push(error);
            out.incomplete = true;
        }
    }
    out
}

/// Runs `parse` on one key's value; on error reports it, skips the rest of the value and
/// returns `None`, so that the keys after it are still read.
fn recover<'a, T>(
    cx: &Ctxt,
    meta: &ParseNestedMeta<'a>,
    parse: impl FnOnce(&ParseNestedMeta<'a>) -> syn::Result<T>,
) -> Option<T> {
    match parse(meta) {
        Ok(value) => Some(value),
        Err(error) => {
            cx.push(error);
            skip_to_comma(meta.input);
            None
        }
    }
}

/// Consumes tokens up to the next top-level `,` (groups are single tokens).
fn skip_to_comma(input: ParseStream) {
    while !input.is_empty() && !input.peek(Token![,]) {
        if input.parse::<TokenTree>().is_err() {
            break;
        }
    }
}

fn parse_version(meta: &ParseNestedMeta) -> syn::Result<u32> {
    let lit: LitInt = meta.value()?.parse()?;
    let value: u32 = lit.base10_parse()?;
    if value == 0 {
        return Err(syn::Error::new_spanned(&lit, "schema versions start at 1: write `version = 1`"));
    }
    Ok(value)
}

fn parse_name(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    let name: LitStr = meta.value()?.parse()?;
    if name.value().trim().is_empty() {
        return Err(syn::Error::new_spanned(&name, "a type name cannot be empty"));
    }
    Ok(name)
}

fn parse_crate(meta: &ParseNestedMeta) -> syn::Result<Path> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse()
    } else {
        input.parse()
    }
}

/// `aliases = ["Old", "Older"]` or `aliases("Old", "Older")`.
fn parse_aliases(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<LitStr>> {
    let aliases = if meta.input.peek(Token![=]) {
        let input = meta.value()?;
        let content;
        syn::bracketed!(content in input);
        drain_on_error(&content, Punctuated::<LitStr, Token![,]>::parse_terminated(&content))?.into_iter().collect()
    } else {
        parse_paren_list(meta, |input| input.parse::<LitStr>())?
    };
    for (index, alias) in aliases.iter().enumerate() {
        if aliases[..index].iter().any(|earlier| earlier.value() == alias.value()) {
            cx.error_spanned_by(alias, format!("alias \"{}\" is listed twice", alias.value()));
        }
    }
    Ok(aliases)
}

/// `upcast_json(v1 = one_to_two, v2 = two_to_three)`; a bare `one_to_two` is kept with no
/// version for the checks to report.
fn parse_json_steps(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<JsonStep>> {
    let mut steps: Vec<JsonStep> = Vec::new();
    let written = parse_nested(meta, |step| {
        if !step.input.peek(Token![=]) {
            // `upcast_json(f)` or `upcast_json(path::f)`: the function without its version.
            steps.push(JsonStep { key: step.path.span(), from: None, function: step.path.clone() });
            skip_to_comma(step.input);
            return Ok(());
        }
        let from = step.path.get_ident().and_then(|ident| {
            let text = ident.to_string();
            text.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0)
        });
        let Some(function) = recover(cx, &step, |step| step.value()?.parse::<Path>()) else { return Ok(()) };
        match from {
            Some(from) => {
                if let Some(first) = steps.iter().find(|s| s.from == Some(from)) {
                    cx.error_spanned_by(&step.path, format!("duplicate upcaster for version {from}"));
                    cx.error_at(first.key, format!("the first upcaster for version {from} is here"));
                } else {
                    steps.push(JsonStep { key: step.path.span(), from: Some(from), function });
                }
            }
            None => cx.error_spanned_by(
                &step.path,
                format!(
                    "`{}` is not a version: write `vN = {}`, where the function turns version N's JSON into version N+1's",
                    path_text(&step.path),
                    path_text(&function)
                ),
            ),
        }
        Ok(())
    })?;
    if !written {
        cx.error_spanned_by(
            &meta.path,
            "`upcast_json()` is empty: name one function per older version, `upcast_json(v1 = one_to_two)` \
             turns version 1's JSON into version 2's",
        );
    }
    steps.sort_by_key(|step| step.from);
    Ok(steps)
}

/// `snapshot(every = 100, version = 1)`.
fn parse_snapshot(cx: &Ctxt, meta: &ParseNestedMeta) -> syn::Result<SnapshotArgs> {
    let mut every: Attr<u64> = Attr::none("every");
    let mut version: Attr<u32> = Attr::none("version");
    parse_nested(meta, |inner| {
        let key = inner.path.clone();
        if key.is_ident("every") {
            let value = recover(cx, &inner, |inner| {
                let lit: LitInt = inner.value()?.parse()?;
                let value: u64 = lit.base10_parse()?;
                if value == 0 {
                    return Err(syn::Error::new_spanned(&lit, "`every` must be at least 1: a snapshot every N events"));
                }
                Ok(value)
            });
            every.set(cx, &key, value);
        } else if key.is_ident("version") {
            let value = recover(cx, &inner, parse_version);
            version.set(cx, &key, value);
        } else {
            cx.error_spanned_by(
                &key,
                format!("unknown key `{}` in `snapshot(...)`; expected `every` or `version`", path_text(&key)),
            );
            skip_to_comma(inner.input);
        }
        Ok(())
    })?;
    let missing = match (every.written(), version.written()) {
        (false, false) => Some("`every` and `version`"),
        (false, true) => Some("`every`"),
        (true, false) => Some("`version`"),
        (true, true) => None,
    };
    if let Some(missing) = missing {
        cx.error_spanned_by(
            &meta.path,
            format!(
                "missing {missing} in `snapshot(...)`: write `snapshot(every = 100, version = 1)`, \
                 a snapshot every 100 events in version 1 of the state's schema"
            ),
        );
    }
    Ok(SnapshotArgs { every: every.into_value().unwrap_or(1), version: version.into_value().unwrap_or(1) })
}

/// `events(A, b::B as OtherB, ...)`.
fn parse_events(meta: &ParseNestedMeta) -> syn::Result<Vec<ListedArg>> {
    parse_paren_list(meta, |input| {
        let path: Path = input.parse()?;
        let stream = if input.peek(Token![in]) {
            input.parse::<Token![in]>()?;
            Some(input.parse::<Path>()?)
        } else {
            None
        };
        let variant = if input.peek(Token![as]) {
            input.parse::<Token![as]>()?;
            Some(input.parse::<Ident>()?)
        } else {
            None
        };
        Ok(ListedArg { path, stream, variant })
    })
}

/// `meta.parse_nested_meta(logic)`, except that empty parentheses are no error (syn reports
/// them as "unexpected end of input"): the caller says what is missing. Returns whether there
/// was anything between them.
fn parse_nested(meta: &ParseNestedMeta, logic: impl FnMut(ParseNestedMeta) -> syn::Result<()>) -> syn::Result<bool> {
    let fork = meta.input.fork();
    let content;
    syn::parenthesized!(content in fork);
    if content.is_empty() {
        let content;
        syn::parenthesized!(content in meta.input);
        drop(content);
        return Ok(false);
    }
    meta.parse_nested_meta(logic)?;
    Ok(true)
}

fn parse_paren_list<T>(meta: &ParseNestedMeta, item: fn(ParseStream) -> syn::Result<T>) -> syn::Result<Vec<T>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let list = drain_on_error(&content, Punctuated::<T, Token![,]>::parse_terminated_with(&content, item))?;
    Ok(list.into_iter().collect())
}

/// On error, consumes what is left of a group, so that syn does not add "unexpected token"
/// for the rest of it on top of the error already reported.
fn drain_on_error<T>(content: ParseStream, result: syn::Result<T>) -> syn::Result<T> {
    if result.is_err() {
        let _ = content.parse::<TokenStream>();
    }
    result
}

pub fn path_text(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(cx: Ctxt) -> Vec<String> {
        match cx.check() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_event_key_is_read() {
        let cx = Ctxt::new();
        let args = parse_event_args(
            &cx,
            quote!(version = 3, name = "Deposited", aliases = ["Paid"], upcast_json(v1 = a, v2 = b), crate = ::es),
        );
        assert_eq!(args.version.get(), Some(&3));
        assert_eq!(args.name.get().map(LitStr::value).as_deref(), Some("Deposited"));
        assert_eq!(args.aliases.get().map(Vec::len), Some(1));
        let steps = args.upcast_json.get().map(|steps| steps.iter().map(|s| s.from).collect::<Vec<_>>());
        assert_eq!(steps, Some(vec![Some(1), Some(2)]));
        assert!(args.krate.get().is_some());
        assert!(messages(cx).is_empty());
    }

    #[test]
    fn a_bad_value_does_not_stop_the_keys_after_it() {
        let cx = Ctxt::new();
        let args = parse_event_args(&cx, quote!(version = 0, name = "", nope = 1, aliases = ["A", "A"]));
        assert!(args.version.written() && args.version.get().is_none());
        assert!(!args.incomplete);
        assert_eq!(
            messages(cx),
            [
                "schema versions start at 1: write `version = 1`",
                "a type name cannot be empty",
                "unknown key `nope` in `#[event]`; expected one of `version`, `name`, `aliases`, `upcast_from`, `upcast_json`, `crate`",
                "alias \"A\" is listed twice",
            ]
        );
    }

    #[test]
    fn a_duplicate_key_points_at_the_first() {
        let cx = Ctxt::new();
        let _ = parse_event_args(&cx, quote!(version = 1, version = 2));
        assert_eq!(messages(cx), ["duplicate `version`", "the first `version` is here"]);
    }

    #[test]
    fn a_bare_upcaster_is_kept_without_a_version() {
        let cx = Ctxt::new();
        let args = parse_event_args(&cx, quote!(version = 2, upcast_json(one_to_two)));
        let steps = args.upcast_json.into_value().unwrap_or_default();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].from, None);
        assert_eq!(path_text(&steps[0].function), "one_to_two");
        assert!(messages(cx).is_empty());
    }

    #[test]
    fn a_syntax_error_in_events_is_one_error_and_the_next_keys_are_read() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> = vec![syn::parse_quote!(#[aggregate(events(A B), id = Uuid)])];
        let args = parse_aggregate_args(&cx, &attrs);
        assert!(args.id.get().is_some());
        assert!(args.events.written() && args.events.get().is_none());
        assert_eq!(messages(cx), ["expected `,`"]);
    }

    #[test]
    fn events_take_an_optional_variant_name() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> =
            vec![syn::parse_quote!(#[aggregate(id = Uuid, events(a::Placed as OrderPlaced, Shipped))])];
        let args = parse_aggregate_args(&cx, &attrs);
        let events = args.events.into_value().unwrap_or_default();
        let variants: Vec<Option<String>> = events.iter().map(|e| e.variant.as_ref().map(Ident::to_string)).collect();
        assert_eq!(variants, [Some("OrderPlaced".to_owned()), None]);
        assert!(messages(cx).is_empty());
    }

    #[test]
    fn snapshot_reports_what_is_missing() {
        let cx = Ctxt::new();
        let attrs: Vec<syn::Attribute> = vec![syn::parse_quote!(#[aggregate(snapshot(every = 0))])];
        let _ = parse_aggregate_args(&cx, &attrs);
        assert_eq!(
            messages(cx),
            [
                "`every` must be at least 1: a snapshot every N events",
                "missing `version` in `snapshot(...)`: write `snapshot(every = 100, version = 1)`, a snapshot every 100 events in version 1 of the state's schema",
            ]
        );
    }
}
