//! The model each macro works from: built once per input from the parsed attributes and the
//! user's item (kept as `original` for spans and for the fallback), then checked once
//! (`check.rs`), then read by the expanders. Nothing is worked out twice.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote};
use syn::spanned::Spanned;
use syn::{Attribute, DeriveInput, Fields, Ident, Meta, Path, Type};

use crate::attr::{AggregateArgs, EventArgs, JsonStep, ListedArg, ProjectionArgs, path_text};
use crate::serde_attr;

/// `#[event(...)]` on a struct.
pub struct Event<'a> {
    pub original: &'a syn::ItemStruct,
    pub args: EventArgs,
    /// `::es` or the user's `crate = path`.
    pub krate: TokenStream,
    /// The stored type name.
    pub name: String,
    pub aliases: Vec<String>,
    /// The version as written; 1 when it is missing or wrong (reported), so that the fallback
    /// still implements `Event`.
    pub version: u32,
    pub upcast: Upcast,
    pub doc: String,
    pub container: Container,
    pub fields: Vec<Field>,
    /// The derives written below `#[event]`, by their last path segment.
    pub written_derives: Vec<String>,
}

/// How older versions are read, worked out once for decoding and for the schema.
pub enum Upcast {
    None,
    /// `upcast_from = Older`, read as version `version - 1`.
    Typed(Path),
    /// `upcast_json(...)`: the functions for versions `oldest .. version`, in order.
    Json {
        functions: Vec<Path>,
        oldest: u32,
    },
}

/// The payload's JSON shape and the serde container attributes that change it.
pub struct Container {
    pub shape: Shape,
    pub rename_all: Option<String>,
    pub tag: Option<String>,
    pub tag_value: String,
    pub deny_unknown_fields: bool,
    pub undescribed: Vec<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    Object,
    Array,
    Inner,
    Null,
}

/// One field, as the schema records it: Rust name and type, and how serde stores it.
pub struct Field {
    pub name: String,
    pub json_name: String,
    pub aliases: Vec<String>,
    pub ty: String,
    pub doc: String,
    pub written: Written,
    pub read: Read,
    pub flatten: bool,
    pub undescribed: Vec<&'static str>,
}

#[derive(PartialEq, Eq, Debug)]
pub enum Written {
    Always,
    Never,
    Unless(String),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Read {
    Required,
    Optional,
    Defaulted,
    Ignored,
}

impl<'a> Event<'a> {
    pub fn from_syn(args: EventArgs, original: &'a syn::ItemStruct) -> Self {
        let krate = crate_path(args.krate.get());
        let rust_type = original.ident.to_string();
        let name = args.name.get().map_or_else(|| rust_type.clone(), syn::LitStr::value);
        let aliases = args.aliases.get().map(|a| a.iter().map(syn::LitStr::value).collect()).unwrap_or_default();
        let version = args.version.get().copied().unwrap_or(1);
        let upcast = upcast_of(&args, version);
        let serde = serde_attr::container(&original.attrs);
        let fields = fields_of(&original.fields, &serde);
        let shape = match &original.fields {
            _ if serde.transparent => Shape::Inner,
            Fields::Named(_) => Shape::Object,
            Fields::Unnamed(fields) if fields.unnamed.len() == 1 => Shape::Inner,
            Fields::Unnamed(_) => Shape::Array,
            Fields::Unit => Shape::Null,
        };
        let container = Container {
            shape,
            rename_all: serde.rename_all.clone(),
            tag_value: serde.rename.clone().unwrap_or_else(|| rust_type.clone()),
            tag: serde.tag.clone(),
            deny_unknown_fields: serde.deny_unknown_fields,
            undescribed: serde.undescribed.clone(),
        };
        Self {
            original,
            krate,
            name,
            aliases,
            version,
            upcast,
            doc: doc_of(&original.attrs),
            container,
            fields,
            written_derives: written_derives(&original.attrs),
            args,
        }
    }

    pub fn ident(&self) -> &Ident {
        &self.original.ident
    }

    pub fn generic(&self) -> bool {
        !self.original.generics.params.is_empty() || self.original.generics.where_clause.is_some()
    }
}

fn upcast_of(args: &EventArgs, version: u32) -> Upcast {
    if version <= 1 {
        return Upcast::None;
    }
    if let Some(older) = args.upcast_from.get() {
        return Upcast::Typed(older.clone());
    }
    match args.upcast_json.get() {
        Some(steps) if !steps.is_empty() => {
            let functions: Vec<Path> = steps
                .iter()
                .filter(|step| step.from.is_some_and(|from| from < version))
                .map(|step: &JsonStep| step.function.clone())
                .collect();
            let oldest = version.saturating_sub(u32::try_from(functions.len()).unwrap_or(u32::MAX)).max(1);
            Upcast::Json { functions, oldest }
        }
        _ => Upcast::None,
    }
}

/// `#[derive(Aggregate)]` with `#[aggregate(...)]`.
pub struct Aggregate<'a> {
    pub original: &'a DeriveInput,
    pub args: AggregateArgs,
    pub krate: TokenStream,
    /// Whether `#[aggregate(...)]` was written at all.
    pub attribute: Option<&'a Attribute>,
    pub stream_type: String,
    pub enum_name: Ident,
    pub doc: String,
    pub events: EventList,
}

impl<'a> Aggregate<'a> {
    pub fn from_syn(args: AggregateArgs, original: &'a DeriveInput) -> Self {
        let krate = crate_path(args.krate.get());
        let ident = &original.ident;
        let stream_type = args.name.get().map_or_else(|| ident.to_string(), syn::LitStr::value);
        let enum_name = args.event_enum.get().cloned().unwrap_or_else(|| format_ident!("{}Event", ident));
        let mut events = EventList::new(args.events.get().map_or(&[][..], Vec::as_slice));
        events.retire(args.retired.get().map_or(&[][..], Vec::as_slice));
        Self {
            original,
            krate,
            attribute: original.attrs.iter().find(|a| a.path().is_ident("aggregate")),
            stream_type,
            enum_name,
            doc: doc_of(&original.attrs),
            events,
            args,
        }
    }

    pub fn ident(&self) -> &Ident {
        &self.original.ident
    }

    pub fn generic(&self) -> bool {
        !self.original.generics.params.is_empty() || self.original.generics.where_clause.is_some()
    }

    /// The id type, or a stand-in when it is missing (reported).
    pub fn id(&self) -> TokenStream {
        self.args.id.get().map_or_else(|| quote!(::std::string::String), ToTokens::to_token_stream)
    }
}

/// `#[derive(Projection)]` with `#[projection(...)]`.
pub struct Projection<'a> {
    pub original: &'a DeriveInput,
    pub args: ProjectionArgs,
    pub krate: TokenStream,
    /// Whether `#[projection(...)]` was written at all.
    pub attribute: Option<&'a Attribute>,
    /// The projection's name: `name = "..."`, or the type's name.
    pub name: String,
    pub version: u32,
    pub events: EventList,
}

impl<'a> Projection<'a> {
    pub fn from_syn(args: ProjectionArgs, original: &'a DeriveInput) -> Self {
        let krate = crate_path(args.krate.get());
        let name = args.name.get().map_or_else(|| original.ident.to_string(), syn::LitStr::value);
        let version = args.version.get().copied().unwrap_or(1);
        let events = EventList::for_projection(args.events.get().map_or(&[][..], Vec::as_slice));
        Self {
            original,
            krate,
            attribute: original.attrs.iter().find(|a| a.path().is_ident("projection")),
            name,
            version,
            events,
            args,
        }
    }

    pub fn ident(&self) -> &Ident {
        &self.original.ident
    }

    pub fn generic(&self) -> bool {
        !self.original.generics.params.is_empty() || self.original.generics.where_clause.is_some()
    }
}

/// The `events(...)` of a derive: shared by every derive over a list of events (the event
/// enum, its conversions and the dispatch are generated from it by `expand::event_list`).
pub struct EventList {
    pub events: Vec<ListedEvent>,
}

pub struct ListedEvent {
    pub path: Path,
    /// `in Aggregate`: only records of that aggregate's streams (projections).
    pub stream: Option<Path>,
    /// The enum's variant: `as Variant`, or the last segment of the path.
    pub variant: Ident,
    /// The path as written, for messages.
    pub text: String,
    /// Dropped from the expansion: a duplicate or otherwise unusable entry (reported).
    pub usable: bool,
    /// Listed in `retired(...)`: read from history, never emitted by a command.
    pub retired: bool,
}

impl ListedEvent {
    pub fn span(&self) -> Span {
        self.path.span()
    }
}

impl EventList {
    pub fn new(args: &[ListedArg]) -> Self {
        let mut events: Vec<ListedEvent> = Vec::with_capacity(args.len());
        for arg in args {
            let last = arg.path.segments.last();
            let variant = match (&arg.variant, last) {
                (Some(variant), _) => variant.clone(),
                // The variant is named after the path but spanned at the call site: rustc then
                // does not suggest the variant for a misspelt event (`crate::AggregateEvent`).
                (None, Some(last)) => Ident::new(&unraw(&last.ident.to_string()), Span::call_site()),
                (None, None) => format_ident!("Event"),
            };
            let text = path_text(&arg.path);
            let usable = last.is_some_and(|last| last.arguments.is_none())
                && !events.iter().any(|e| e.usable && (e.text == text || e.variant == variant));
            events.push(ListedEvent {
                path: arg.path.clone(),
                stream: arg.stream.clone(),
                variant,
                text,
                usable,
                retired: false,
            });
        }
        Self { events }
    }

    /// The list of a projection: no enum, so no variants; an event is listed once per stream
    /// type (`in Aggregate`).
    pub fn for_projection(args: &[ListedArg]) -> Self {
        let mut events: Vec<ListedEvent> = Vec::with_capacity(args.len());
        for arg in args {
            let text = path_text(&arg.path);
            let stream_text = arg.stream.as_ref().map(path_text);
            let generic = arg.path.segments.last().is_none_or(|last| !last.arguments.is_none());
            let usable = !generic
                && !events
                    .iter()
                    .any(|e| e.usable && e.text == text && e.stream.as_ref().map(path_text) == stream_text);
            let variant = format_ident!("Event");
            events.push(ListedEvent {
                path: arg.path.clone(),
                stream: arg.stream.clone(),
                variant,
                text,
                usable,
                retired: false,
            });
        }
        Self { events }
    }

    /// Adds the events of `retired(...)`, after the others, marked retired.
    pub fn retire(&mut self, args: &[ListedArg]) {
        let retired = Self::new(args);
        for mut event in retired.events {
            event.usable = event.usable
                && !self.events.iter().any(|e| e.usable && (e.text == event.text || e.variant == event.variant));
            event.retired = true;
            self.events.push(event);
        }
    }

    /// The events the expansion uses.
    pub fn usable(&self) -> impl Iterator<Item = &ListedEvent> {
        self.events.iter().filter(|event| event.usable)
    }
}

/// The doc comment of an item or field: `///` lines joined, one leading space dropped.
pub fn doc_of(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(text), .. }) = &nv.value
        {
            let text = text.value();
            lines.push(text.strip_prefix(' ').unwrap_or(&text).trim_end().to_owned());
        }
    }
    lines.join("\n").trim().to_owned()
}

fn fields_of(fields: &Fields, container: &serde_attr::Container) -> Vec<Field> {
    fields
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let name = field.ident.as_ref().map_or_else(|| index.to_string(), |ident| unraw(&ident.to_string()));
            let serde = serde_attr::field(&field.attrs);
            let renamed = |rule: Option<&String>| {
                rule.and_then(|rule| serde_attr::apply_rule(rule, &name)).unwrap_or_else(|| name.clone())
            };
            let json_name = serde.rename.clone().unwrap_or_else(|| renamed(container.rename_all.as_ref()));
            let read_name = serde.rename_de.clone().unwrap_or_else(|| {
                if serde.rename.is_some() {
                    json_name.clone()
                } else {
                    renamed(container.rename_all_de.as_ref().or(container.rename_all.as_ref()))
                }
            });
            let mut aliases = Vec::new();
            if read_name != json_name {
                aliases.push(read_name);
            }
            aliases.extend(serde.aliases.iter().filter(|alias| **alias != json_name).cloned());
            let written = if serde.skip_serializing {
                Written::Never
            } else if let Some(predicate) = &serde.skip_serializing_if {
                Written::Unless(predicate.clone())
            } else {
                Written::Always
            };
            let read = if serde.skip_deserializing {
                Read::Ignored
            } else if serde.default || container.default {
                Read::Defaulted
            } else if is_option(&field.ty) && serde.undescribed.is_empty() && !serde.flatten {
                Read::Optional
            } else {
                Read::Required
            };
            Field {
                name,
                json_name,
                aliases,
                ty: type_text(&field.ty),
                doc: doc_of(&field.attrs),
                written,
                read,
                flatten: serde.flatten,
                undescribed: serde.undescribed,
            }
        })
        .collect()
}

/// `Option<T>` as written (also `std::option::Option<T>`): serde reads an absent one as `None`.
fn is_option(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|last| last.ident == "Option" && !last.arguments.is_none()))
}

fn unraw(name: &str) -> String {
    name.strip_prefix("r#").unwrap_or(name).to_owned()
}

/// A type as the user wrote it, with the token spacing of `to_string` tidied (`Vec<String>`,
/// not `Vec < String >`).
pub fn type_text(ty: &impl ToTokens) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let chars: Vec<char> = raw.chars().collect();
    for (index, &c) in chars.iter().enumerate() {
        if c == ' ' {
            let before = index.checked_sub(1).and_then(|i| chars.get(i)).copied().unwrap_or(' ');
            let after = chars.get(index + 1).copied().unwrap_or(' ');
            let tight = matches!(before, '<' | '&' | ':' | '(' | '[')
                || matches!(after, '<' | '>' | ',' | ':' | ')' | ']' | ';');
            if tight && !(before == ';' || after == '=') {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// The derives already written below `#[event]`, by their last path segment.
fn written_derives(attrs: &[Attribute]) -> Vec<String> {
    let mut names = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        let _ = attr.parse_nested_meta(|meta| {
            if let Some(last) = meta.path.segments.last() {
                names.push(last.ident.to_string());
            }
            Ok(())
        });
    }
    names
}

/// `::es` or the user's `crate = path`.
pub fn crate_path(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(path) => path.to_token_stream(),
        None => quote::quote!(::es),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::parse_event_args;
    use crate::ctxt::Ctxt;
    use quote::quote;

    fn event_model<T>(args: TokenStream, item: TokenStream, read: impl FnOnce(&Event) -> T) -> T {
        let cx = Ctxt::new();
        let args = parse_event_args(&cx, args);
        let item: syn::ItemStruct = syn::parse2(item).unwrap_or_else(|e| panic!("{e}"));
        let model = Event::from_syn(args, &item);
        let out = read(&model);
        let _ = cx.check();
        out
    }

    #[test]
    fn the_json_chain_and_its_oldest_version_are_worked_out_once() {
        event_model(
            quote!(version = 3, upcast_json(v2 = b, v1 = a)),
            quote!(
                struct Price {
                    cents: u64,
                }
            ),
            |model| match &model.upcast {
                Upcast::Json { functions, oldest } => {
                    assert_eq!(functions.iter().map(path_text).collect::<Vec<_>>(), ["a", "b"]);
                    assert_eq!(*oldest, 1);
                }
                _ => panic!("expected a JSON chain"),
            },
        );
    }

    #[test]
    fn version_one_upcasts_nothing() {
        event_model(
            quote!(version = 1, upcast_from = Old),
            quote!(
                struct New {}
            ),
            |model| {
                assert!(matches!(model.upcast, Upcast::None));
            },
        );
    }

    #[test]
    fn serde_names_are_the_stored_ones() {
        event_model(
            quote!(version = 1),
            quote! {
                #[serde(rename_all = "camelCase")]
                struct LabelPrinted {
                    printer_name: String,
                    #[serde(rename = "qty", alias = "count")]
                    quantity: u32,
                    #[serde(default, skip_serializing_if = "Option::is_none")]
                    note: Option<String>,
                    reference: Option<String>,
                    #[serde(skip)]
                    cache: u8,
                    #[serde(flatten, with = "x")]
                    extra: Extra,
                }
            },
            |model| {
                let names: Vec<(&str, &str)> =
                    model.fields.iter().map(|f| (f.name.as_str(), f.json_name.as_str())).collect();
                assert_eq!(
                    names,
                    [
                        ("printer_name", "printerName"),
                        ("quantity", "qty"),
                        ("note", "note"),
                        ("reference", "reference"),
                        ("cache", "cache"),
                        ("extra", "extra")
                    ]
                );
                assert_eq!(model.fields[1].aliases, ["count"]);
                assert_eq!(model.fields[2].written, Written::Unless("Option::is_none".to_owned()));
                assert_eq!(model.fields[2].read, Read::Defaulted);
                assert_eq!(model.fields[3].read, Read::Optional);
                assert_eq!((&model.fields[4].written, model.fields[4].read), (&Written::Never, Read::Ignored));
                assert!(model.fields[5].flatten);
                assert_eq!(model.fields[5].undescribed, ["with"]);
                assert_eq!(model.container.rename_all.as_deref(), Some("camelCase"));
            },
        );
    }

    #[test]
    fn shapes_follow_the_fields() {
        for (item, shape) in [
            (
                quote!(
                    struct A {
                        x: u8,
                    }
                ),
                Shape::Object,
            ),
            (
                quote!(
                    struct A(u8, u8);
                ),
                Shape::Array,
            ),
            (
                quote!(
                    struct A(u8);
                ),
                Shape::Inner,
            ),
            (
                quote!(
                    struct A;
                ),
                Shape::Null,
            ),
            (
                quote!(
                    #[serde(transparent)]
                    struct A {
                        x: u8,
                    }
                ),
                Shape::Inner,
            ),
        ] {
            event_model(quote!(version = 1), item, |model| assert_eq!(model.container.shape, shape));
        }
    }

    #[test]
    fn a_listed_event_is_named_after_its_path_or_its_as() {
        let args: Vec<ListedArg> = vec![
            ListedArg { path: syn::parse_quote!(a::Placed), stream: None, variant: None },
            ListedArg { path: syn::parse_quote!(b::Placed), stream: None, variant: Some(format_ident!("Replaced")) },
            ListedArg { path: syn::parse_quote!(a::Placed), stream: None, variant: None },
        ];
        let list = EventList::new(&args);
        let variants: Vec<String> = list.usable().map(|e| e.variant.to_string()).collect();
        assert_eq!(variants, ["Placed", "Replaced"]);
    }
}
