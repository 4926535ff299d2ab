//! C4: wsgiref's abstract methods (`_write`, `_flush`, `get_stdin`,
//! `get_stderr`, `add_cgi_vars`) are the required methods of `Gateway`: an
//! implementation missing any one of them does not compile.
//!
//! Each case in `tests/ui/` leaves out one method; `trybuild` compiles it
//! and compares rustc's diagnostics with the `.stderr` file beside it
//! (error E0046, naming the missing method). After a compiler upgrade that
//! rewords the diagnostic, regenerate them with
//! `TRYBUILD=overwrite cargo test -p gateway-core --test compile_fail` and
//! review the diff: the E0046 line must still name the method. The
//! `.stderr` files refer only to the case files (not to gateway-core's
//! sources), so editing `src/` does not disturb them.

#[test]
fn c4_gateway_required_methods() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/missing_*.rs");
    // The control: all five present, nothing else, compiles.
    t.pass("tests/ui/complete_gateway.rs");
}
