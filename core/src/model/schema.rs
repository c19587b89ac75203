//! The workspace schema: which fields each record type has, of which kind, and the deal pipeline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::record_type::RecordType;
use super::value::FieldKind;

/// One declared field of a record type.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[cfg_attr(feature = "uniffi", uniffi(name = "SchemaField"))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// Kind of value the field holds.
    pub kind: FieldKind,
    /// Whether a record must have the field.
    pub required: bool,
    /// Whether the app declared it (false for the built-in fields).
    pub custom: bool,
}

impl FieldDef {
    /// An optional field of this kind.
    pub fn optional(kind: FieldKind) -> Self {
        Self {
            kind,
            required: false,
            custom: false,
        }
    }

    /// A required field of this kind.
    pub fn required(kind: FieldKind) -> Self {
        Self {
            kind,
            required: true,
            custom: false,
        }
    }
}

/// The declared fields of one record type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDef {
    /// Fields by name.
    pub fields: BTreeMap<String, FieldDef>,
    /// Groups of fields of which at least one must be present (contact: first or last name).
    pub one_of: Vec<Vec<String>>,
}

/// One stage of the deal pipeline.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Stage name as stored in the deal's `stage` field.
    pub name: String,
    /// Default win probability in percent for deals in this stage.
    pub probability: u8,
    /// Whether a deal in this stage is closed.
    pub closed: bool,
    /// Whether a deal in this stage is won.
    pub won: bool,
}

/// The deal pipeline: stage names in order, with default probabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Stages in pipeline order.
    pub stages: Vec<Stage>,
}

impl Default for Pipeline {
    fn default() -> Self {
        let stage = |name: &str, probability, closed, won| Stage {
            name: name.to_string(),
            probability,
            closed,
            won,
        };
        Self {
            stages: vec![
                stage("prospecting", 10, false, false),
                stage("qualification", 20, false, false),
                stage("proposal", 50, false, false),
                stage("negotiation", 80, false, false),
                stage("closed_won", 100, true, true),
                stage("closed_lost", 0, true, false),
            ],
        }
    }
}

impl Pipeline {
    /// The stage with this name.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// Position of a stage in the pipeline.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// All record types of a workspace with their fields, and the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    types: BTreeMap<RecordType, TypeDef>,
    pipeline: Pipeline,
}

impl Default for Schema {
    fn default() -> Self {
        Self::with_pipeline(Pipeline::default())
    }
}

fn enums(values: &[&str]) -> FieldKind {
    FieldKind::Enum(values.iter().map(|v| v.to_string()).collect())
}

fn def(fields: Vec<(&str, FieldDef)>, one_of: &[&[&str]]) -> TypeDef {
    TypeDef {
        fields: fields
            .into_iter()
            .map(|(n, d)| (n.to_string(), d))
            .collect(),
        one_of: one_of
            .iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect(),
    }
}

impl Schema {
    /// The built-in CRM types with this deal pipeline.
    pub fn with_pipeline(pipeline: Pipeline) -> Self {
        use FieldDef as F;
        use FieldKind as K;
        use RecordType as T;
        let opt = F::optional;
        let req = F::required;
        let link = |t: &[T]| K::Link(t.to_vec());
        let links = |t: &[T]| K::Links(t.to_vec());
        let customer = [T::Contact, T::Company];
        let stage_names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        let non_negative = K::Int {
            min: Some(0),
            max: None,
        };
        let mut types = BTreeMap::new();
        types.insert(
            T::Company,
            def(
                vec![
                    ("name", req(K::Text)),
                    ("domain", opt(K::Text)),
                    ("industry", opt(K::Text)),
                    ("employee_count", opt(non_negative.clone())),
                    ("annual_revenue", opt(K::Money)),
                    ("phone", opt(K::Text)),
                    ("address", opt(K::Text)),
                    ("region", opt(K::Text)),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        types.insert(
            T::Contact,
            def(
                vec![
                    ("first_name", opt(K::Text)),
                    ("last_name", opt(K::Text)),
                    ("emails", opt(K::Emails)),
                    ("phones", opt(K::List)),
                    ("title", opt(K::Text)),
                    ("company", opt(link(&[T::Company]))),
                    (
                        "lifecycle",
                        opt(enums(&["lead", "prospect", "customer", "churned"])),
                    ),
                    ("source", opt(K::Text)),
                    ("address", opt(K::Text)),
                    ("region", opt(K::Text)),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[&["first_name", "last_name"]],
            ),
        );
        types.insert(
            T::Deal,
            def(
                vec![
                    ("name", req(K::Text)),
                    ("company", opt(link(&[T::Company]))),
                    ("contacts", opt(links(&[T::Contact]))),
                    ("amount", opt(K::Money)),
                    ("stage", opt(enums(&stage_names))),
                    (
                        "probability",
                        opt(K::Int {
                            min: Some(0),
                            max: Some(100),
                        }),
                    ),
                    ("expected_close", opt(K::Date)),
                    ("closed_at", opt(K::Timestamp)),
                    ("lost_reason", opt(K::Text)),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        types.insert(
            T::Activity,
            def(
                vec![
                    (
                        "kind",
                        req(enums(&[
                            "call", "meeting", "email", "note", "task", "visit",
                        ])),
                    ),
                    ("subject", opt(K::Text)),
                    ("body", opt(K::LongText)),
                    ("due_at", opt(K::Timestamp)),
                    ("done_at", opt(K::Timestamp)),
                    ("related", opt(links(&[]))),
                    ("outcome", opt(K::Text)),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        types.insert(
            T::Case,
            def(
                vec![
                    ("subject", req(K::Text)),
                    ("description", opt(K::LongText)),
                    (
                        "status",
                        opt(enums(&["new", "open", "pending", "resolved", "closed"])),
                    ),
                    ("priority", opt(enums(&["low", "normal", "high", "urgent"]))),
                    ("channel", opt(K::Text)),
                    ("contact", opt(link(&[T::Contact]))),
                    ("company", opt(link(&[T::Company]))),
                    (
                        "satisfaction",
                        opt(K::Int {
                            min: Some(1),
                            max: Some(5),
                        }),
                    ),
                    ("feedback", opt(K::LongText)),
                    ("resolved_at", opt(K::Timestamp)),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        types.insert(
            T::Order,
            def(
                vec![
                    ("customer", opt(link(&customer))),
                    ("ordered_at", req(K::Timestamp)),
                    ("lines", opt(K::Lines)),
                    ("total", opt(K::Money)),
                    (
                        "status",
                        opt(enums(&["draft", "placed", "paid", "shipped", "cancelled"])),
                    ),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        types.insert(
            T::Product,
            def(
                vec![
                    ("sku", req(K::Text)),
                    ("name", req(K::Text)),
                    ("category", opt(K::Text)),
                    ("price", opt(K::Money)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        types.insert(
            T::Campaign,
            def(
                vec![
                    ("name", req(K::Text)),
                    ("channel", opt(K::Text)),
                    (
                        "status",
                        opt(enums(&["planned", "active", "paused", "completed"])),
                    ),
                    ("starts_at", opt(K::Timestamp)),
                    ("ends_at", opt(K::Timestamp)),
                    ("budget", opt(K::Money)),
                    ("members", opt(links(&customer))),
                    ("owner", opt(K::Text)),
                    ("tags", opt(K::List)),
                ],
                &[],
            ),
        );
        Self { types, pipeline }
    }

    /// The definition of a record type, if the schema has it.
    pub fn type_def(&self, record_type: &RecordType) -> Option<&TypeDef> {
        self.types.get(record_type)
    }

    /// The definition of one field.
    pub fn field(&self, record_type: &RecordType, field: &str) -> Option<&FieldDef> {
        self.types.get(record_type)?.fields.get(field)
    }

    /// All record types, built-in first.
    pub fn record_types(&self) -> impl Iterator<Item = &RecordType> {
        self.types.keys()
    }

    /// The deal pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Replaces the pipeline, and with it the allowed values of the deal `stage` field.
    pub fn set_pipeline(&mut self, pipeline: Pipeline) {
        let names = pipeline.stages.iter().map(|s| s.name.clone()).collect();
        if let Some(deal) = self.types.get_mut(&RecordType::Deal) {
            deal.fields.insert(
                "stage".to_string(),
                FieldDef::optional(FieldKind::Enum(names)),
            );
        }
        self.pipeline = pipeline;
    }

    /// Adds or replaces a custom field. Built-in fields cannot be redefined.
    pub fn define_field(
        &mut self,
        record_type: &RecordType,
        name: &str,
        mut field: FieldDef,
    ) -> Result<(), SchemaError> {
        let def = self
            .types
            .get_mut(record_type)
            .ok_or_else(|| SchemaError::UnknownType(record_type.to_string()))?;
        if def.fields.get(name).is_some_and(|f| !f.custom) {
            return Err(SchemaError::BuiltInField {
                record_type: record_type.to_string(),
                field: name.to_string(),
            });
        }
        check_name(name)?;
        field.custom = true;
        def.fields.insert(name.to_string(), field);
        Ok(())
    }

    /// Declares a custom record type with its fields.
    pub fn define_type(
        &mut self,
        name: &str,
        fields: BTreeMap<String, FieldDef>,
    ) -> Result<RecordType, SchemaError> {
        let record_type = RecordType::from(name);
        if record_type.is_built_in() {
            return Err(SchemaError::BuiltInType(name.to_string()));
        }
        check_name(name)?;
        for field in fields.keys() {
            check_name(field)?;
        }
        let fields = fields
            .into_iter()
            .map(|(n, mut f)| {
                f.custom = true;
                (n, f)
            })
            .collect();
        self.types.insert(
            record_type.clone(),
            TypeDef {
                fields,
                one_of: Vec::new(),
            },
        );
        Ok(record_type)
    }

    /// The app's own declarations (custom types, custom fields, pipeline), which is what needs
    /// to be persisted: the built-ins come from the code.
    pub fn customizations(&self) -> Customizations {
        let mut custom_fields = BTreeMap::new();
        let mut custom_types = BTreeMap::new();
        for (t, def) in &self.types {
            if t.is_built_in() {
                let fields: BTreeMap<_, _> = def
                    .fields
                    .iter()
                    .filter(|(_, f)| f.custom)
                    .map(|(n, f)| (n.clone(), f.clone()))
                    .collect();
                if !fields.is_empty() {
                    custom_fields.insert(t.to_string(), fields);
                }
            } else {
                custom_types.insert(t.to_string(), def.fields.clone());
            }
        }
        Customizations {
            pipeline: self.pipeline.clone(),
            custom_fields,
            custom_types,
        }
    }

    /// Rebuilds a schema from persisted customizations.
    pub fn from_customizations(c: Customizations) -> Result<Self, SchemaError> {
        let mut schema = Schema::default();
        schema.set_pipeline(c.pipeline);
        for (name, fields) in c.custom_types {
            schema.define_type(&name, fields)?;
        }
        for (t, fields) in c.custom_fields {
            for (name, field) in fields {
                schema.define_field(&RecordType::from(t.as_str()), &name, field)?;
            }
        }
        Ok(schema)
    }
}

/// What an app changed of the default schema; persisted in the store's meta table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customizations {
    /// The deal pipeline.
    pub pipeline: Pipeline,
    /// Custom fields on built-in types, by type name.
    pub custom_fields: BTreeMap<String, BTreeMap<String, FieldDef>>,
    /// Custom types with their fields.
    pub custom_types: BTreeMap<String, BTreeMap<String, FieldDef>>,
}

/// A schema change that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The type does not exist.
    #[error("unknown record type '{0}': declare it with define_type first")]
    UnknownType(String),
    /// Built-in types cannot be redeclared.
    #[error("'{0}' is a built-in record type and cannot be redeclared")]
    BuiltInType(String),
    /// Built-in fields cannot be redeclared.
    #[error("{record_type}.{field} is a built-in field and cannot be redeclared")]
    BuiltInField {
        /// The record type.
        record_type: String,
        /// The field.
        field: String,
    },
    /// Names must be simple identifiers.
    #[error(
        "'{0}' is not a valid name: use lowercase letters, digits and '_', starting with a letter"
    )]
    BadName(String),
}

fn check_name(name: &str) -> Result<(), SchemaError> {
    let ok = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(SchemaError::BadName(name.to_string()))
    }
}
