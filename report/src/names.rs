//! Function names the way jeprof shows them: demangled (C++ and Rust), then shortened by
//! jeprof's ShortFunctionName (no argument lists, no template arguments, no leading
//! return type); and jeprof's list of allocator functions that never appear in a report.

/// Demangles a C++ (`_Z...`) or Rust (legacy `_ZN...17h<hash>E` or v0 `_R...`) symbol,
/// as `addr2line -C` and `nm --demangle` do; anything else is returned unchanged.
/// A symbol version suffix (`@@GLIBC_2.2.5`) is kept after the demangled name.
pub fn demangle(raw: &str) -> String {
    let (name, version) = match raw.find('@') {
        Some(at) if at > 0 => raw.split_at(at),
        _ => (raw, ""),
    };
    let demangled = demangle_plain(name);
    if version.is_empty() {
        demangled
    } else {
        bounded(&format!("{demangled}{version}"))
    }
}

/// The longest name kept, in bytes. Symbol names come from files other users can write;
/// a short mangled name can demangle to an enormous one. Longer names are cut (ending in
/// `...`), and names that would demangle to more are shown mangled.
pub const MAX_NAME: usize = 64 * 1024;

/// A `fmt::Write` into a String that fails beyond [`MAX_NAME`] bytes.
struct Bounded(String);

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() + s.len() > MAX_NAME {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// `name`, cut to [`MAX_NAME`] bytes at a character boundary.
fn bounded(name: &str) -> String {
    if name.len() <= MAX_NAME {
        return name.to_owned();
    }
    let mut end = MAX_NAME - 3;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &name[..end])
}

fn demangle_plain(name: &str) -> String {
    if name.len() > MAX_NAME {
        return bounded(name);
    }
    if name.starts_with("_R") || is_rust_legacy(name) {
        if let Ok(d) = rustc_demangle::try_demangle(name) {
            // `{:#}` leaves out the hash, as binutils does.
            let mut out = Bounded(String::new());
            if std::fmt::Write::write_fmt(&mut out, format_args!("{d:#}")).is_ok() {
                return out.0;
            }
        }
    }
    if name.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(name) {
            let mut out = Bounded(String::new());
            if sym
                .structured_demangle(&mut out, &Default::default())
                .is_ok()
            {
                return out.0;
            }
        }
    }
    name.to_owned()
}

#[cfg(test)]
#[test]
fn names_stay_bounded() {
    let long = "x".repeat(MAX_NAME + 10);
    let d = demangle(&long);
    assert_eq!(d.len(), MAX_NAME);
    assert!(d.ends_with("..."));
    // Each level refers twice to the one before, so the output doubles per level.
    let bomb = |levels: usize| {
        let mut m = String::from("_Z1fIPi");
        for level in 1..=levels {
            // The previous level's pointer type is substitution 2(level-1).
            let i = 2 * (level - 1);
            let s = if i == 0 {
                "S_".to_owned()
            } else {
                format!("S{}_", radix36(i - 1))
            };
            m.push_str(&format!("PFv{s}{s}E"));
        }
        m.push_str("EvT_");
        m
    };
    fn radix36(mut n: usize) -> String {
        let digits = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut out = Vec::new();
        loop {
            out.insert(0, digits[n % 36]);
            n /= 36;
            if n == 0 {
                return String::from_utf8(out).unwrap_or_default();
            }
        }
    }
    let unbounded = cpp_demangle::Symbol::new(bomb(14).as_str())
        .unwrap()
        .demangle()
        .unwrap();
    assert!(unbounded.len() > 4 * MAX_NAME, "{}", unbounded.len());
    // 40 levels: 2^40 bytes written out; ours stops at MAX_NAME and keeps the raw name.
    let m = bomb(40);
    assert_eq!(demangle(&m), m);
    assert!(demangle(&bomb(14)).len() <= MAX_NAME);
    assert_eq!(demangle("_ZN5space3fooEibc"), "space::foo(int, bool, char)");
}

/// `_ZN...17h0123456789abcdefE`: Rust's legacy mangling (a C++-like name with a hash).
fn is_rust_legacy(name: &str) -> bool {
    let Some(body) = name.strip_prefix("_ZN").and_then(|n| n.strip_suffix('E')) else {
        return false;
    };
    // Bytes, not str slices: a symbol may hold UTF-8 identifiers.
    let b = body.as_bytes();
    b.len() > 19 && {
        let tail = &b[b.len() - 19..];
        tail.starts_with(b"17h") && tail[3..].iter().all(u8::is_ascii_hexdigit)
    }
}

#[cfg(test)]
#[test]
fn rust_legacy_check_survives_non_ascii_symbols() {
    assert!(!is_rust_legacy("_ZN1ééééééééééE"));
    assert!(is_rust_legacy("_ZN4core3fmt5write17h0123456789abcdefE"));
}

/// One pass of Perl's `s/\([^()]*\)(\s*const)?//g`; true if anything was removed.
fn strip_args_once(s: &mut String) -> bool {
    strip_innermost_once(s, b'(', b')', true)
}

/// One pass of Perl's `s/<[^<>]*>//g`.
fn strip_templates_once(s: &mut String) -> bool {
    strip_innermost_once(s, b'<', b'>', false)
}

/// Removes every innermost `open ... close` group (no `open` or `close` inside), and with
/// `then_const` a `const` that follows it after optional white space. True if anything
/// was removed. Cuts fall next to ASCII delimiters, so UTF-8 stays intact.
fn strip_innermost_once(s: &mut String, open: u8, close: u8, then_const: bool) -> bool {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut last = 0;
    let mut changed = false;
    while i < bytes.len() {
        if bytes[i] == open {
            if let Some(rel) = bytes[i + 1..].iter().position(|&b| b == open || b == close) {
                let at = i + 1 + rel;
                if bytes[at] == close {
                    let mut end = at + 1;
                    if then_const {
                        let mut j = end;
                        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        if bytes[j..].starts_with(b"const") {
                            end = j + 5;
                        }
                    }
                    out.push_str(&s[last..i]);
                    last = end;
                    i = end;
                    changed = true;
                    continue;
                }
            }
        }
        i += 1;
    }
    if changed {
        out.push_str(&s[last..]);
        *s = out;
    }
    changed
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// jeprof's ShortFunctionName: `void ns::Foo<int>::bar(int) const` -> `ns::Foo::bar`.
pub fn short_function_name(full: &str) -> String {
    let mut s = full.to_owned();
    while strip_args_once(&mut s) {}
    while strip_templates_once(&mut s) {}
    // s/^.*\s+(\w+::)/$1/: cut before the last whitespace that is followed by `word::`.
    let b = s.as_bytes();
    let mut cut = None;
    for i in (0..b.len()).rev() {
        if b[i].is_ascii_whitespace() {
            let mut j = i + 1;
            while j < b.len() && is_word(b[j]) {
                j += 1;
            }
            if j > i + 1 && b[j..].starts_with(b"::") {
                cut = Some(i + 1);
                break;
            }
        }
    }
    match cut {
        Some(c) => s[c..].to_owned(),
        None => s,
    }
}

/// jeprof's RemoveUninterestingFrames list for heap profiles (with Mach-O's `_` variants)
/// and its regexp `TCMalloc|^tcmalloc::`.
pub fn is_allocator_frame(short_name: &str) -> bool {
    const SKIP: &[&str] = &[
        "calloc",
        "cfree",
        "malloc",
        "newImpl",
        "void* newImpl",
        "free",
        "memalign",
        "posix_memalign",
        "aligned_alloc",
        "pvalloc",
        "valloc",
        "realloc",
        "mallocx",
        "rallocx",
        "xallocx",
        "dallocx",
        "sdallocx",
        "sdallocx_noflags",
        "tc_calloc",
        "tc_cfree",
        "tc_malloc",
        "tc_free",
        "tc_memalign",
        "tc_posix_memalign",
        "tc_pvalloc",
        "tc_valloc",
        "tc_realloc",
        "tc_new",
        "tc_delete",
        "tc_newarray",
        "tc_deletearray",
        "tc_new_nothrow",
        "tc_newarray_nothrow",
        "do_malloc",
        "::do_malloc",
        "::do_malloc_or_cpp_alloc",
        "DoSampledAllocation",
        "simple_alloc::allocate",
        "__malloc_alloc_template::allocate",
        "__builtin_delete",
        "__builtin_new",
        "__builtin_vec_delete",
        "__builtin_vec_new",
        "operator new",
        "operator new[]",
        "malloc_zone_malloc",
        "malloc_zone_calloc",
        "malloc_zone_valloc",
        "malloc_zone_realloc",
        "malloc_zone_memalign",
        "malloc_zone_free",
        "__start_google_malloc",
        "__stop_google_malloc",
        "__start_malloc_hook",
        "__stop_malloc_hook",
    ];
    let plain = short_name
        .strip_prefix('_')
        .filter(|rest| SKIP.contains(rest));
    SKIP.contains(&short_name)
        || plain.is_some()
        // jemsafe's bundled jemalloc (libjemsafe_jemalloc.so): every jemalloc symbol in
        // it carries the `_rjem_` prefix (`_rjem_malloc`, `_rjem_je_prof_backtrace`).
        || short_name.starts_with("_rjem_")
        || short_name.contains("TCMalloc")
        || short_name.starts_with("tcmalloc::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_match_jeprof() {
        for (full, short) in [
            ("my_malloc", "my_malloc"),
            ("THD::THD(unsigned long, bool)", "THD::THD"),
            ("operator new(unsigned long)", "operator new"),
            ("operator new[](unsigned long)", "operator new[]"),
            (
                "std::vector<int, std::allocator<int> >::push_back(int const&)",
                "std::vector::push_back",
            ),
            ("void ns::f<int>(int) const", "ns::f"),
            ("String::length() const", "String::length"),
            ("f(void (*)(int)) const", "f"),
            ("(anonymous namespace)::foo(int)", "::foo"),
            ("foo(int)<0000000000001234>", "foo"),
            (
                "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop",
                "::drop",
            ),
            (
                "alloc::raw_vec::RawVec<T,A>::grow_one",
                "alloc::raw_vec::RawVec::grow_one",
            ),
            (
                "malloc@@GLIBC_2.2.5<0000000000098930>",
                "malloc@@GLIBC_2.2.5",
            ),
            ("workload::main::{{closure}}", "workload::main::{{closure}}"),
        ] {
            assert_eq!(short_function_name(full), short, "{full}");
        }
    }

    #[test]
    fn demangles_cpp_and_rust() {
        assert_eq!(demangle("_Znwm"), "operator new(unsigned long)");
        assert_eq!(demangle("_ZN3THDC2Emb"), "THD::THD(unsigned long, bool)");
        assert_eq!(
            demangle("_ZN8workload28jemsafe_workload_leak_marker17h0123456789abcdefE"),
            "workload::jemsafe_workload_leak_marker"
        );
        assert_eq!(demangle("malloc"), "malloc");
        assert_eq!(
            demangle("_ZdlPv@@GLIBCXX_3.4"),
            "operator delete(void*)@@GLIBCXX_3.4"
        );
    }

    #[test]
    fn allocator_frames() {
        for f in [
            "malloc",
            "_malloc",
            "operator new",
            "calloc",
            "tcmalloc::x",
            "aTCMallocb",
            "_rjem_malloc",
            "_rjem_je_malloc_default",
        ] {
            assert!(is_allocator_frame(f), "{f}");
        }
        for f in [
            "my_malloc",
            "je_malloc_default",
            "malloc@@GLIBC_2.2.5",
            "_my",
        ] {
            assert!(!is_allocator_frame(f), "{f}");
        }
    }
}
