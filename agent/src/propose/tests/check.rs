//! The checks before the GPU: every bundled kernel passes; a renamed entry, a
//! changed parameter list, a forbidden include, an oversize or unparsable source
//! fail with a reason the proposer can act on.

use super::*;

fn rowsum() -> KernelSpec {
    spec("rowsum")
}

fn fails(spec: &KernelSpec, source: &str, word: &str) {
    match check(spec, source) {
        Ok(()) => panic!("accepted:\n{source}"),
        Err(e) => assert!(e.contains(word), "`{word}` not in: {e}"),
    }
}

#[test]
fn every_bundled_kernel_passes() {
    let mut n = 0;
    for e in std::fs::read_dir(kernels_dir()).unwrap() {
        let dir = e.unwrap().path();
        if !dir.join("kernel.toml").is_file() {
            continue;
        }
        let s = KernelSpec::load(&dir).unwrap_or_else(|e| panic!("{e}"));
        check(&s, &s.source).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        n += 1;
    }
    assert!(n >= 7, "{n} kernels");
}

#[test]
fn a_renamed_entry_fails() {
    let s = rowsum();
    fails(
        &s,
        &s.source.replace("rowsum(", "rowsum_v2("),
        "defines no kernel `rowsum`",
    );
}

#[test]
fn a_changed_parameter_list_fails_naming_the_difference() {
    let s = rowsum();
    let src = |from: &str, to: &str| {
        assert!(s.source.contains(from));
        s.source.replace(from, to)
    };
    fails(
        &s,
        &src(", int rows, int cols)", ", int rows)"),
        "has 3 parameter(s)",
    );
    fails(
        &s,
        &src(", int rows, int cols)", ", int rows, int cols, int ld)"),
        "spec's are 4: x (pointer), y (pointer), rows, cols",
    );
    fails(
        &s,
        &src("int rows, int cols", "int cols, int rows"),
        "parameter 3 of `rowsum` is `cols`; the spec's is `rows`",
    );
    fails(
        &s,
        &src("float* __restrict__ y", "float* __restrict__ out"),
        "is `out`",
    );
    fails(
        &s,
        &src("int cols)", "int* cols)"),
        "`cols` of `rowsum` is a pointer",
    );
    fails(
        &s,
        &src("float* __restrict__ y", "float y"),
        "`y` of `rowsum` is a value",
    );
}

#[test]
fn the_entry_must_stay_an_extern_c_kernel() {
    let s = rowsum();
    fails(&s, &s.source.replace("extern \"C\" ", ""), "extern \"C\"");
    fails(
        &s,
        &s.source.replace("__global__ ", "__device__ "),
        "not declared `__global__`",
    );
    let block = s
        .source
        .replace("extern \"C\" __global__", "extern \"C\" {\n__global__")
        + "\n}\n";
    check(&s, &block).unwrap_or_else(|e| panic!("an extern \"C\" block is fine: {e}"));
}

#[test]
fn forbidden_includes_fail() {
    let s = rowsum();
    let with = |line: &str| format!("{line}\n{}", s.source);
    fails(
        &s,
        &with("#include \"/etc/passwd\""),
        "line 1: `/etc/passwd` is an absolute path",
    );
    fails(&s, &with("#include </etc/passwd>"), "absolute path");
    fails(&s, &with("#include \"../../x.h\""), "climbs out");
    fails(
        &s,
        &with("#include \"../include/reduce.cuh\""),
        "climbs out",
    );
    fails(
        &s,
        &with("#include <stdio.h>"),
        "not among the standard CUDA headers",
    );
    fails(
        &s,
        &with("#include \"nothere.cuh\""),
        "neither beside the kernel",
    );
    fails(
        &s,
        &with("#define P \"/etc/passwd\"\n#include P"),
        "line 2: an `#include` must name",
    );
    fails(
        &s,
        &with("#include_next <cuda_fp16.h>"),
        "`#include_next` is not allowed",
    );
    fails(
        &s,
        &with("  #  inc\\\nlude \"/etc/passwd\""),
        "absolute path",
    );
    fails(&s, &with("#include \"C:\\\\x.h\""), "absolute path");
}

#[test]
fn allowed_includes_pass() {
    let s = rowsum();
    for line in [
        "#include <cuda_fp16.h>",
        "#include \"cuda_bf16.h\"",
        "#include <mma.h>",
        "#include <cuda/pipeline>",
        "#include <cooperative_groups/reduce.h>",
        "#include \"vec.cuh\"",
        "#include \"./reduce.cuh\"",
        "// #include \"/etc/passwd\" in a comment",
    ] {
        check(&s, &format!("{line}\n{}", s.source)).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
}

#[cfg(unix)]
#[test]
fn a_header_that_links_outside_its_directory_fails() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("repo");
    crate::testutil::copy_dir(&kernels_dir().join("rowsum"), &root.join("kernels/rowsum"));
    crate::testutil::copy_dir(
        &kernels_dir().join("include"),
        &root.join("kernels/include"),
    );
    std::fs::write(d.path().join("secret.h"), "int secret;\n").unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap(); // the spec's repository
    std::os::unix::fs::symlink(
        d.path().join("secret.h"),
        root.join("kernels/rowsum/evil.h"),
    )
    .unwrap();
    let s = KernelSpec::load(&root.join("kernels/rowsum")).unwrap_or_else(|e| panic!("{e}"));
    check(&s, &s.source).unwrap();
    fails(
        &s,
        &format!("#include \"evil.h\"\n{}", s.source),
        "resolves outside",
    );
}

#[test]
fn oversize_garbage_and_nul_fail() {
    let s = rowsum();
    let big = format!("{}\n//{}\n", s.source, "x".repeat(MAX_SOURCE_BYTES));
    fails(&s, &big, "over the 256 KiB limit");
    fails(
        &s,
        "this is not C {{{ at all",
        "does not parse: 1 unreadable region(s), the first at line 1",
    );
    fails(
        &s,
        &format!("{}\nint broken( {{\n", s.source),
        "does not parse",
    );
    fails(&s, "", "defines no kernel");
    fails(&s, &format!("{}\0", s.source), "NUL");
}

#[test]
fn no_input_panics() {
    let s = rowsum();
    for text in [
        "#",
        "#include",
        "#include \"",
        "#include <",
        "\\",
        "é\"#include \"é",
        "extern \"C\" __global__ void rowsum(",
        "\u{feff}#include <x>",
    ] {
        let _ = check(&s, text);
    }
}
