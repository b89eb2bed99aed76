//! A system: the aggregates whose events are documented and locked together.

use es_core::Aggregate;
use es_core::schema::{AggregateSchema, EventSchema, Upcast};

/// The schemas of a set of aggregates, in the order they were added.
///
/// `System::of::<(BankAccount, Customer)>("bank")`, or
/// `System::new("bank").with::<BankAccount>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// The system's name: the title of its docs.
    pub name: String,
    /// Its aggregates.
    pub aggregates: Vec<AggregateSchema>,
}

impl System {
    /// A system of no aggregates yet.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), aggregates: Vec::new() }
    }

    /// A system of the aggregates in the tuple `L`, in order.
    #[must_use]
    pub fn of<L: AggregateList>(name: impl Into<String>) -> Self {
        let mut system = Self::new(name);
        L::push_schemas(&mut system.aggregates);
        system
    }

    /// Adds aggregate `A`.
    #[must_use]
    pub fn with<A: Aggregate>(mut self) -> Self {
        self.aggregates.push(A::schema());
        self
    }

    /// Adds an aggregate schema as it is (one written by hand, or built in a test).
    #[must_use]
    pub fn with_schema(mut self, schema: AggregateSchema) -> Self {
        self.aggregates.push(schema);
        self
    }
}

/// A tuple of aggregate types, for [`System::of`]: `(A,)`, `(A, B)`, … up to twelve.
pub trait AggregateList {
    /// Appends the schema of each aggregate, in order.
    fn push_schemas(schemas: &mut Vec<AggregateSchema>);
}

macro_rules! tuple_list {
    ($($name:ident),+) => {
        impl<$($name: Aggregate),+> AggregateList for ($($name,)+) {
            fn push_schemas(schemas: &mut Vec<AggregateSchema>) {
                $(schemas.push($name::schema());)+
            }
        }
    };
}

tuple_list!(A);
tuple_list!(A, B);
tuple_list!(A, B, C);
tuple_list!(A, B, C, D);
tuple_list!(A, B, C, D, E);
tuple_list!(A, B, C, D, E, F);
tuple_list!(A, B, C, D, E, F, G);
tuple_list!(A, B, C, D, E, F, G, H);
tuple_list!(A, B, C, D, E, F, G, H, I);
tuple_list!(A, B, C, D, E, F, G, H, I, J);
tuple_list!(A, B, C, D, E, F, G, H, I, J, K);
tuple_list!(A, B, C, D, E, F, G, H, I, J, K, L);

/// How one version of an event is known to today's code.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Known<'a> {
    /// Its struct is in the code: its fields are known.
    Typed(&'a EventSchema),
    /// It is read as raw JSON by an `upcast_json` function: its fields are no longer known.
    Raw,
}

/// Every version today's code reads of `event`, newest first: the event itself, the structs of
/// its `upcast_from` chain, and the versions its JSON upcasters read.
#[must_use]
pub(crate) fn versions(event: &EventSchema) -> Vec<(u32, Known<'_>)> {
    let mut out = Vec::new();
    let mut at = event;
    loop {
        out.push((at.version, Known::Typed(at)));
        match &at.upcast {
            Upcast::None => break,
            Upcast::Typed { from } => at = from,
            Upcast::Json { oldest } => {
                out.extend((*oldest..at.version).rev().map(|version| (version, Known::Raw)));
                break;
            }
        }
    }
    out
}
