//! Parsing of `#[event(...)]` and `#[aggregate(...)]`. Every key is read even after an error,
//! a duplicate key says where the first one was, and an unknown key lists the valid ones.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;

/// One helper-attribute key: its value and the key's tokens (for "duplicate" errors).
pub struct Attr<T> {
    name: &'static str,
    set: Option<(TokenStream, T)>,
}

impl<T> Attr<T> {
    pub fn none(name: &'static str) -> Self {
        Self { name, set: None }
    }

    fn set(&mut self, cx: &mut Ctxt, key: &Path, value: T) {
        if let Some((first, _)) = &self.set {
            cx.error(key, format!("duplicate `{}`", self.name));
            cx.error(first.clone(), format!("the first `{}` is here", self.name));
        } else {
            self.set = Some((key.to_token_stream(), value));
        }
    }

    pub fn get(&self) -> Option<&T> {
        self.set.as_ref().map(|(_, value)| value)
    }

    pub fn key(&self) -> Option<&TokenStream> {
        self.set.as_ref().map(|(key, _)| key)
    }

    pub fn into_value(self) -> Option<T> {
        self.set.map(|(_, value)| value)
    }
}

/// A schema version as written.
pub struct VersionLit {
    pub value: u32,
}

/// One `vN = function` entry of `upcast_json(...)`.
pub struct JsonStep {
    pub key: Ident,
    pub from: u32,
    pub function: Path,
}

pub struct EventArgs {
    pub version: Attr<VersionLit>,
    pub name: Attr<LitStr>,
    pub aliases: Attr<Vec<LitStr>>,
    pub upcast_from: Attr<Path>,
    pub upcast_json: Attr<Vec<JsonStep>>,
    pub krate: Attr<Path>,
    /// A syntax error stopped parsing: the keys after it were not read, so none of them is
    /// reported missing.
    pub incomplete: bool,
}

const EVENT_KEYS: &str = "`version`, `name`, `aliases`, `upcast_from`, `upcast_json`, `crate`";

pub fn parse_event_args(cx: &mut Ctxt, args: TokenStream) -> EventArgs {
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
            let version = parse_version(&meta)?;
            out.version.set(cx, &key, version);
        } else if key.is_ident("name") {
            let name = parse_name(&meta)?;
            out.name.set(cx, &key, name);
        } else if key.is_ident("aliases") {
            let aliases = parse_aliases(cx, &meta)?;
            out.aliases.set(cx, &key, aliases);
        } else if key.is_ident("upcast_from") {
            let path: Path = meta.value()?.parse()?;
            out.upcast_from.set(cx, &key, path);
        } else if key.is_ident("upcast_json") {
            let steps = parse_json_steps(cx, &meta)?;
            out.upcast_json.set(cx, &key, steps);
        } else if key.is_ident("crate") {
            let path = parse_crate(&meta)?;
            out.krate.set(cx, &key, path);
        } else {
            cx.error(&key, format!("unknown key `{}` in `#[event]`; expected one of {EVENT_KEYS}", path_text(&key)));
            skip_value(&meta)?;
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

pub struct AggregateArgs {
    pub id: Attr<Type>,
    pub events: Attr<Vec<Path>>,
    pub error: Attr<Type>,
    pub snapshot: Attr<SnapshotArgs>,
    pub event_enum: Attr<Ident>,
    pub name: Attr<LitStr>,
    pub krate: Attr<Path>,
    /// As in [`EventArgs::incomplete`].
    pub incomplete: bool,
}

const AGGREGATE_KEYS: &str = "`id`, `events`, `error`, `snapshot`, `event_enum`, `name`, `crate`";

pub fn parse_aggregate_args(cx: &mut Ctxt, attrs: &[syn::Attribute]) -> AggregateArgs {
    let mut out = AggregateArgs {
        id: Attr::none("id"),
        events: Attr::none("events"),
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
                let ty: Type = meta.value()?.parse()?;
                out.id.set(cx, &key, ty);
            } else if key.is_ident("events") {
                let events = parse_paren_list(&meta, |input| input.parse::<Path>())?;
                if events.is_empty() {
                    cx.error(&key, "`events(...)` is empty; list the events this aggregate applies: `events(AccountOpened, MoneyDeposited)`");
                }
                out.events.set(cx, &key, events);
            } else if key.is_ident("error") {
                let ty: Type = meta.value()?.parse()?;
                out.error.set(cx, &key, ty);
            } else if key.is_ident("snapshot") {
                let snapshot = parse_snapshot(cx, &meta)?;
                out.snapshot.set(cx, &key, snapshot);
            } else if key.is_ident("event_enum") {
                let ident: Ident = meta.value()?.parse()?;
                out.event_enum.set(cx, &key, ident);
            } else if key.is_ident("name") {
                let name = parse_name(&meta)?;
                out.name.set(cx, &key, name);
            } else if key.is_ident("crate") {
                let path = parse_crate(&meta)?;
                out.krate.set(cx, &key, path);
            } else {
                cx.error(
                    &key,
                    format!("unknown key `{}` in `#[aggregate]`; expected one of {AGGREGATE_KEYS}", path_text(&key)),
                );
                skip_value(&meta)?;
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

fn parse_version(meta: &ParseNestedMeta) -> syn::Result<VersionLit> {
    let lit: LitInt = meta.value()?.parse()?;
    let value: u32 = lit.base10_parse()?;
    if value == 0 {
        return Err(syn::Error::new_spanned(&lit, "schema versions start at 1: write `version = 1`"));
    }
    Ok(VersionLit { value })
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
fn parse_aliases(cx: &mut Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<LitStr>> {
    let aliases = if meta.input.peek(Token![=]) {
        let input = meta.value()?;
        let content;
        syn::bracketed!(content in input);
        Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?.into_iter().collect()
    } else {
        parse_paren_list(meta, |input| input.parse::<LitStr>())?
    };
    for (index, alias) in aliases.iter().enumerate() {
        if aliases[..index].iter().any(|earlier| earlier.value() == alias.value()) {
            cx.error(alias, format!("alias \"{}\" is listed twice", alias.value()));
        }
    }
    Ok(aliases)
}

/// `upcast_json(v1 = one_to_two, v2 = two_to_three)`.
fn parse_json_steps(cx: &mut Ctxt, meta: &ParseNestedMeta) -> syn::Result<Vec<JsonStep>> {
    let mut steps: Vec<JsonStep> = Vec::new();
    let written = parse_nested(meta, |step| {
        let key = step.path.get_ident().cloned();
        let from = key.as_ref().and_then(|ident| {
            let text = ident.to_string();
            text.strip_prefix('v').and_then(|n| n.parse::<u32>().ok()).filter(|n| *n > 0)
        });
        let function: Path = step.value()?.parse()?;
        match (key, from) {
            (Some(key), Some(from)) => {
                if let Some(first) = steps.iter().find(|s| s.from == from) {
                    cx.error(&key, format!("duplicate upcaster for version {from}"));
                    cx.error(&first.key, format!("the first upcaster for version {from} is here"));
                } else {
                    steps.push(JsonStep { key, from, function });
                }
            }
            _ => cx.error(
                &step.path,
                "expected `vN = function`, where the function turns version N's JSON into version N+1's: `upcast_json(v1 = add_reference)`",
            ),
        }
        Ok(())
    })?;
    if !written {
        cx.error(
            &meta.path,
            "`upcast_json()` is empty: name one function per older version, `upcast_json(v1 = one_to_two)` \
             turns version 1's JSON into version 2's",
        );
    }
    steps.sort_by_key(|step| step.from);
    Ok(steps)
}

/// `snapshot(every = 100, version = 1)`.
fn parse_snapshot(cx: &mut Ctxt, meta: &ParseNestedMeta) -> syn::Result<SnapshotArgs> {
    let mut every: Attr<u64> = Attr::none("every");
    let mut version: Attr<u32> = Attr::none("version");
    parse_nested(meta, |inner| {
        let key = inner.path.clone();
        if key.is_ident("every") {
            let lit: LitInt = inner.value()?.parse()?;
            let value: u64 = lit.base10_parse()?;
            if value == 0 {
                cx.error(&lit, "`every` must be at least 1: a snapshot every N events");
            }
            every.set(cx, &key, value);
        } else if key.is_ident("version") {
            let version_lit = parse_version(&inner)?;
            version.set(cx, &key, version_lit.value);
        } else {
            cx.error(
                &key,
                format!("unknown key `{}` in `snapshot(...)`; expected `every` or `version`", path_text(&key)),
            );
            skip_value(&inner)?;
        }
        Ok(())
    })?;
    let missing = match (every.get(), version.get()) {
        (None, None) => Some("`every` and `version`"),
        (None, Some(_)) => Some("`every`"),
        (Some(_), None) => Some("`version`"),
        (Some(_), Some(_)) => None,
    };
    if let Some(missing) = missing {
        cx.error(
            &meta.path,
            format!(
                "missing {missing} in `snapshot(...)`: write `snapshot(every = 100, version = 1)`, \
                 a snapshot every 100 events in version 1 of the state's schema"
            ),
        );
    }
    Ok(SnapshotArgs { every: every.into_value().unwrap_or(1).max(1), version: version.into_value().unwrap_or(1) })
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
    Ok(Punctuated::<T, Token![,]>::parse_terminated_with(&content, item)?.into_iter().collect())
}

/// Consumes the value of an unknown key so parsing can go on to the next one.
fn skip_value(meta: &ParseNestedMeta) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

pub fn path_text(path: &Path) -> String {
    path.to_token_stream().to_string().replace(' ', "")
}
