//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates:
//! - the prost messages and tonic clients and servers (`shoal.v1.rs`),
//! - proto3-JSON serde impls with pbjson (`shoal.v1.serde.rs`),
//! - the REST route table and one axum router per service, from each method's
//!   `google.api.http` annotation (`rest_routes.rs`),
//! - the OpenAPI 3.1 document (`openapi.json`),
//! - the encoded descriptor set, for gRPC reflection (`descriptor.bin`), which adds
//!   `google/rpc/error_details.proto` so clients can decode every error's `ErrorInfo`.
//!
//! The annotations are the single source of truth for REST: no route is written by hand.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use prost_reflect::{
    Cardinality, DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor,
    MethodDescriptor, Value,
};

const FILES: &[&str] = &["shoal/v1/agent.proto", "shoal/v1/server.proto"];
const PACKAGE: &str = "shoal.v1";
/// Served by reflection only: the error detail type, for clients to decode.
const ERROR_DETAILS: &str = "google/rpc/error_details.proto";

type BuildResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BuildResult<()> {
    println!("cargo:rerun-if-changed=proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;
    let fds = compiler.file_descriptor_set();
    let encoded = compiler.encode_file_descriptor_set();

    // Reflection serves one more file: google.rpc.ErrorInfo, the detail of every error, so a
    // reflection client decodes it (grpcurl prints its reason) instead of showing raw bytes.
    let mut reflection = protox::Compiler::new(["proto"])?;
    reflection.include_imports(true).include_source_info(true);
    reflection.open_files(FILES.iter().chain(&[ERROR_DETAILS]))?;
    std::fs::write(
        out.join("descriptor.bin"),
        reflection.encode_file_descriptor_set(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_well_known_types(true)
        // pbjson-types 0.9 writes a Timestamp as `...+00:00` (chrono's `to_rfc3339`); proto3
        // JSON wants `...Z`, as grpcurl prints. The more specific path wins in prost-build.
        .extern_path(".google.protobuf.Timestamp", "crate::wkt::Timestamp")
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .build(&[".shoal"])?;

    let pool = DescriptorPool::decode(encoded.as_slice())?;
    let routes = routes(&pool)?;
    std::fs::write(out.join("rest_routes.rs"), rest_code(&routes))?;
    std::fs::write(out.join("openapi.json"), openapi(&pool, &routes)?)?;
    Ok(())
}

/// One REST binding of a gRPC method.
struct Route {
    method: MethodDescriptor,
    verb: &'static str,
    path: String,
    body: bool,
}

fn routes(pool: &DescriptorPool) -> BuildResult<Vec<Route>> {
    let http = pool
        .get_extension_by_name("google.api.http")
        .ok_or("google.api.http is not in the descriptor pool")?;
    let mut routes = Vec::new();
    for service in pool.services().filter(|s| s.package_name() == PACKAGE) {
        for method in service.methods() {
            let options = method.options();
            if !options.has_extension(&http) {
                return Err(format!("{} has no google.api.http option", method.full_name()).into());
            }
            let rule = options.get_extension(&http);
            let Value::Message(rule) = rule.as_ref() else {
                return Err("google.api.http is not a message".into());
            };
            let (verb, path) = ["get", "post", "put", "delete", "patch"]
                .into_iter()
                .find_map(|verb| {
                    rule.has_field_by_name(verb)
                        .then(|| string_field(rule, verb))
                        .map(|p| (verb, p))
                })
                .ok_or_else(|| format!("{}: no HTTP verb", method.full_name()))?;
            let body = string_field(rule, "body");
            if !(body.is_empty() || body == "*") {
                return Err(format!("{}: only body \"*\" or none", method.full_name()).into());
            }
            if path.contains('{') {
                return Err(format!("{}: path templates are not used", method.full_name()).into());
            }
            routes.push(Route {
                method,
                verb,
                path,
                body: body == "*",
            });
        }
    }
    Ok(routes)
}

fn string_field(message: &DynamicMessage, name: &str) -> String {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The JSON paths of the bool fields of a query-string request, so `?includeTorrent=true`
/// becomes a JSON `true` (every other scalar is accepted as a string by proto3 JSON).
fn bool_paths(message: &MessageDescriptor, prefix: &str, depth: u32, out: &mut Vec<String>) {
    if depth > 4 {
        return;
    }
    for field in message.fields() {
        if field.cardinality() == Cardinality::Repeated {
            continue;
        }
        for name in [field.json_name().to_owned(), field.name().to_owned()] {
            let path = format!("{prefix}{name}");
            match field.kind() {
                Kind::Bool => out.push(path),
                Kind::Message(inner) => bool_paths(&inner, &format!("{path}."), depth + 1, out),
                _ => {}
            }
        }
    }
}

fn rest_code(routes: &[Route]) -> String {
    let mut code = String::new();
    code.push_str("/// Every REST binding: (gRPC path, HTTP verb, REST path).\n");
    code.push_str("pub const ROUTES: &[RestRoute] = &[\n");
    for r in routes {
        let _ = writeln!(
            code,
            "    RestRoute {{ grpc_path: \"/{}/{}\", verb: \"{}\", path: \"{}\", server_streaming: {} }},",
            r.method.parent_service().full_name(),
            r.method.name(),
            r.verb.to_uppercase(),
            r.path,
            r.method.is_server_streaming()
        );
    }
    code.push_str("];\n\n");
    let mut by_service: BTreeMap<String, Vec<&Route>> = BTreeMap::new();
    for r in routes {
        by_service
            .entry(r.method.parent_service().name().to_owned())
            .or_default()
            .push(r);
    }
    for (service, routes) in by_service {
        let module = format!("{}_server", snake(&service));
        let _ = writeln!(
            code,
            "/// The REST routes of `shoal.v1.{service}`, calling the same implementation as gRPC.\n\
             pub fn {}<T: crate::v1::{module}::{service}>(service: std::sync::Arc<T>) -> axum::Router {{\n    axum::Router::new()",
            snake(&service)
        );
        for r in routes {
            let mut bools = Vec::new();
            if !r.body {
                bool_paths(&r.method.input(), "", 0, &mut bools);
            }
            let bools = bools
                .iter()
                .map(|b| format!("\"{b}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let input = if r.body {
                "crate::rest::Input::Body".to_owned()
            } else {
                format!("crate::rest::Input::Query(&[{bools}])")
            };
            let call = if r.method.is_server_streaming() {
                "server_streaming"
            } else {
                "unary"
            };
            let _ = writeln!(
                code,
                "        .route(\"{path}\", axum::routing::{verb}({{\n            let service = service.clone();\n            move |request: axum::extract::Request| {{\n                let service = service.clone();\n                async move {{ crate::rest::{call}(request, {input}, |r| async move {{ service.{method}(r).await }}).await }}\n            }}\n        }}))",
                path = r.path,
                verb = r.verb,
                method = snake(r.method.name()),
            );
        }
        code.push_str("}\n\n");
    }
    code
}

/// Leading comments of every element, by (file, source path).
fn comments(pool: &DescriptorPool) -> BTreeMap<(String, Vec<i32>), String> {
    let mut out = BTreeMap::new();
    for file in pool.files() {
        let proto = file.file_descriptor_proto();
        if let Some(info) = &proto.source_code_info {
            for loc in &info.location {
                if let Some(c) = &loc.leading_comments {
                    out.insert(
                        (file.name().to_owned(), loc.path.clone()),
                        c.trim().replace('\n', " ").replace("  ", " "),
                    );
                }
            }
        }
    }
    out
}

fn json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn field_schema(field: &FieldDescriptor) -> String {
    let scalar = |kind: &Kind| -> String {
        match kind {
            Kind::Bool => r#"{"type": "boolean"}"#.into(),
            Kind::String => r#"{"type": "string"}"#.into(),
            Kind::Bytes => r#"{"type": "string", "contentEncoding": "base64"}"#.into(),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                r#"{"type": "integer", "format": "int32"}"#.into()
            }
            Kind::Uint32 | Kind::Fixed32 => {
                r#"{"type": "integer", "format": "int32", "minimum": 0}"#.into()
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                r#"{"type": "string", "format": "int64"}"#.into()
            }
            Kind::Uint64 | Kind::Fixed64 => r#"{"type": "string", "format": "uint64"}"#.into(),
            Kind::Float | Kind::Double => r#"{"type": "number"}"#.into(),
            Kind::Enum(e) => format!(
                r#"{{"type": "string", "enum": [{}]}}"#,
                e.values()
                    .map(|v| json(v.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Kind::Message(m) => {
                format!(r##"{{"$ref": "#/components/schemas/{}"}}"##, m.full_name())
            }
        }
    };
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        return format!(
            r#"{{"type": "object", "additionalProperties": {}}}"#,
            scalar(&entry.map_entry_value_field().kind())
        );
    }
    if field.is_list() {
        return format!(r#"{{"type": "array", "items": {}}}"#, scalar(&field.kind()));
    }
    scalar(&field.kind())
}

fn openapi(pool: &DescriptorPool, routes: &[Route]) -> BuildResult<String> {
    let docs = comments(pool);
    let doc = |file: &str, path: &[i32]| docs.get(&(file.to_owned(), path.to_vec())).cloned();
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in routes {
        let m = &r.method;
        let file = m.parent_file().name().to_owned();
        let summary = doc(&file, m.path()).unwrap_or_default();
        let response = if m.is_server_streaming() {
            format!(
                r##""200": {{"description": "One JSON object per line, each a {out}; an error after the first line is a final line {{\"error\": ...}}.", "content": {{"application/x-ndjson": {{"schema": {{"$ref": "#/components/schemas/{out}"}}}}}}}}"##,
                out = m.output().full_name()
            )
        } else {
            format!(
                r##""200": {{"description": "OK", "content": {{"application/json": {{"schema": {{"$ref": "#/components/schemas/{}"}}}}}}}}"##,
                m.output().full_name()
            )
        };
        let errors = r##""default": {"description": "An error: the HTTP status, and in the body a stable machine-readable reason (details[0].reason) and a message", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}"##;
        let input = if r.body {
            format!(
                r##""requestBody": {{"required": true, "content": {{"application/json": {{"schema": {{"$ref": "#/components/schemas/{}"}}}}}}}}, "##,
                m.input().full_name()
            )
        } else {
            let mut params = Vec::new();
            query_params(&m.input(), "", 0, &mut params);
            format!(r#""parameters": [{}], "#, params.join(", "))
        };
        paths.entry(r.path.clone()).or_default().push(format!(
            r#""{verb}": {{"operationId": {op}, "summary": {summary}, "description": {grpc}, {input}"responses": {{{response}, {errors}}}}}"#,
            verb = r.verb,
            op = json(&format!("{}.{}", m.parent_service().name(), m.name())),
            summary = json(&summary),
            grpc = json(&format!(
                "gRPC: /{}/{}",
                m.parent_service().full_name(),
                m.name()
            )),
        ));
    }
    let mut schemas = Vec::new();
    for message in pool.all_messages() {
        let name = message.full_name();
        if name == "google.protobuf.Timestamp" {
            schemas.push(format!(
                r#"{}: {{"type": "string", "format": "date-time"}}"#,
                json(name)
            ));
            continue;
        }
        if !name.starts_with("shoal.") || message.is_map_entry() {
            continue;
        }
        let file = message.parent_file().name().to_owned();
        let props = message
            .fields()
            .map(|f| {
                let mut schema = field_schema(&f);
                if let Some(d) = doc(&file, f.path()) {
                    schema = format!(r#"{{"description": {}, "allOf": [{schema}]}}"#, json(&d));
                }
                format!("{}: {schema}", json(f.json_name()))
            })
            .collect::<Vec<_>>()
            .join(", ");
        schemas.push(format!(
            r#"{}: {{"type": "object", "description": {}, "properties": {{{props}}}}}"#,
            json(name),
            json(&doc(&file, message.path()).unwrap_or_default())
        ));
    }
    schemas.push(
        r##""Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": {"type": "integer"}, "status": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "array", "items": {"type": "object", "properties": {"@type": {"type": "string"}, "reason": {"type": "string"}, "domain": {"type": "string"}, "metadata": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}"##
            .into(),
    );
    let paths = paths
        .into_iter()
        .map(|(p, ops)| format!("{}: {{{}}}", json(&p), ops.join(", ")))
        .collect::<Vec<_>>()
        .join(",\n    ");
    Ok(format!(
        "{{\n  \"openapi\": \"3.1.0\",\n  \"info\": {{\"title\": \"Shoal API\", \"version\": \"v1\", \"description\": \"The agent's and the control plane's REST/JSON API. Each operation is also a gRPC method (see its description); request and response bodies are the proto3 JSON form of the same messages.\"}},\n  \"paths\": {{\n    {paths}\n  }},\n  \"components\": {{\"schemas\": {{\n    {}\n  }}}}\n}}\n",
        schemas.join(",\n    ")
    ))
}

fn query_params(message: &MessageDescriptor, prefix: &str, depth: u32, out: &mut Vec<String>) {
    if depth > 4 {
        return;
    }
    for field in message.fields() {
        let path = format!("{prefix}{}", field.json_name());
        match field.kind() {
            Kind::Message(inner) if !field.is_list() && !field.is_map() => {
                query_params(&inner, &format!("{path}."), depth + 1, out);
            }
            _ if field.is_list() || field.is_map() => {}
            _ => out.push(format!(
                r#"{{"name": {}, "in": "query", "required": false, "schema": {}}}"#,
                json(&path),
                field_schema(&field)
            )),
        }
    }
}
