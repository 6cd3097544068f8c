//! The committed C header must be exactly what cbindgen generates from src/ffi (with the version macros
//! from Cargo.toml). `BP_BLESS=1 cargo test --test header` rewrites include/bp.h.

use std::path::PathBuf;

fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let (major, minor, patch) = (
        env!("CARGO_PKG_VERSION_MAJOR").parse::<u32>().unwrap(),
        env!("CARGO_PKG_VERSION_MINOR").parse::<u32>().unwrap(),
        env!("CARGO_PKG_VERSION_PATCH").parse::<u32>().unwrap(),
    );
    config.after_includes = Some(format!(
        "\n/** The version of this header (from Cargo.toml); bp_version() gives the library's. */\n\
         #define BP_VERSION_MAJOR {major}\n#define BP_VERSION_MINOR {minor}\n#define BP_VERSION_PATCH {patch}\n\
         /** BP_VERSION_MAJOR * 10000 + BP_VERSION_MINOR * 100 + BP_VERSION_PATCH, comparable with bp_version(). */\n\
         #define BP_VERSION_NUMBER {number}\n\
         /** The version as a string, comparable with bp_version_string(). */\n\
         #define BP_VERSION_STRING \"{version}\"\n\n\
         /**\n * A graph: an arena of tensors and the record of the ops that made them. Opaque: C only holds\n \
         * pointers to it, made by `bp_graph_new` and released by `bp_graph_free`.\n */\n\
         typedef struct bp_graph bp_graph;",
        number = major * 10000 + minor * 100 + patch,
        version = env!("CARGO_PKG_VERSION"),
    ));
    let bindings = cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_matches_a_fresh_generation() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/bp.h");
    let fresh = generate();
    if std::env::var_os("BP_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/bp.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let line = committed.lines().zip(fresh.lines()).position(|(a, b)| a != b).map_or(0, |i| i + 1);
        panic!(
            "include/bp.h differs from what cbindgen generates from src/ffi (first difference near line {}). \
             Run `BP_BLESS=1 cargo test --test header` and commit include/bp.h.",
            line
        );
    }
}

#[test]
fn header_version_macros_equal_cargo_version_and_bp_version() {
    let header = generate();
    let number = bp::ffi::version::bp_version();
    let (major, minor, patch) = (number / 10000, number / 100 % 100, number % 100);
    assert!(header.contains(&format!("#define BP_VERSION_MAJOR {}\n", major)));
    assert!(header.contains(&format!("#define BP_VERSION_MINOR {}\n", minor)));
    assert!(header.contains(&format!("#define BP_VERSION_PATCH {}\n", patch)));
    assert_eq!(format!("{}.{}.{}", major, minor, patch), env!("CARGO_PKG_VERSION"));
    // SAFETY: bp_version_string returns a static NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(bp::ffi::version::bp_version_string()) };
    assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn every_exported_function_has_an_ownership_line() {
    let header = generate();
    let mut doc = String::new();
    for line in header.lines() {
        if line.trim_start().starts_with("/**") || line.trim_start().starts_with('*') {
            doc.push_str(line);
            doc.push('\n');
        } else if line.contains("bp_") && line.contains('(') && !line.starts_with('#') {
            assert!(doc.contains("Ownership:"), "the doc comment of `{}` has no Ownership: line", line.trim());
            doc.clear();
        } else if !line.trim().is_empty() {
            doc.clear();
        }
    }
}

/// Every function in the header is called by some C test or example, so none goes unexercised from C
/// (and under valgrind). Test files may generate calls with `UNARY(name)` for `bp_name`.
#[test]
fn every_exported_function_is_called_from_c() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut c_sources = String::new();
    for dir in ["tests/c", "examples/c"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("C sources exist") {
            let path = entry.unwrap().path();
            if matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h" | "cpp")) {
                c_sources.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let called = |name: &str| {
        c_sources.match_indices(name).any(|(i, _)| {
            let before = c_sources[..i].chars().next_back().is_none_or(|c| !is_ident(c));
            let after = c_sources[i + name.len()..].chars().next().is_none_or(|c| !is_ident(c));
            before && after
        }) || c_sources.contains(&format!("UNARY({})", &name[3..]))
    };
    let header = generate();
    let mut missing = Vec::new();
    let mut names = 0;
    for line in header.lines().filter(|l| !l.starts_with([' ', '#', '/', '*']) && l.contains('(')) {
        // The function name is the identifier right before the first '('.
        let head = &line[..line.find('(').unwrap()];
        let name: String = head.chars().rev().take_while(|&c| is_ident(c)).collect::<Vec<_>>().into_iter().rev().collect();
        if !name.starts_with("bp_") {
            continue;
        }
        names += 1;
        if !called(&name) {
            missing.push(name);
        }
    }
    assert!(names >= 98, "only {} functions found in the header: the parsing above is broken", names);
    assert!(missing.is_empty(), "no C test calls: {:?}", missing);
}

#[test]
fn every_name_the_header_exports_carries_the_bp_prefix() {
    // cbindgen reads the whole crate: a `pub const` or `#[repr(C)]` type added anywhere would land in
    // the C namespace unprefixed. Macros, functions and types must all be BP_* / bp_*.
    let header = generate();
    let mut bad = Vec::new();
    for line in header.lines() {
        let name = if let Some(rest) = line.strip_prefix("#define ") {
            rest.split_whitespace().next()
        } else if let Some(rest) = line.strip_prefix("typedef ").filter(|r| r.contains("(*")) {
            // A function pointer type, `typedef int32_t (*bp_name)(args…`, its arguments maybe on
            // the lines below.
            rest.split("(*").nth(1).and_then(|r| r.split(')').next())
        } else if let Some(rest) = line.strip_prefix("typedef ").filter(|r| !r.ends_with('{')) {
            rest.trim_end_matches(';').split_whitespace().last()
        } else if let Some(rest) = line.strip_prefix("} ") {
            Some(rest.trim().trim_end_matches(';')).filter(|n| !n.starts_with("//"))
        } else if line.starts_with(|c: char| c.is_ascii_alphabetic()) && line.contains('(') && !line.starts_with("extern") {
            line.split('(').next().and_then(|s| s.split_whitespace().last()).map(|s| s.trim_start_matches('*'))
        } else {
            None
        };
        if let Some(n) = name {
            if !(n.starts_with("bp_") || n.starts_with("BP_")) {
                bad.push(n.to_string());
            }
        }
    }
    assert!(bad.is_empty(), "unprefixed names in bp.h (exclude them in cbindgen.toml or make them pub(crate)): {bad:?}");
}
