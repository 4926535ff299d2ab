//! C4: a `Gateway` without `add_cgi_vars` (one of wsgiref's abstract methods)
//! does not compile.

struct NoOp;

impl gateway_core::Gateway for NoOp {
    async fn write(&mut self, _data: bytes::Bytes) -> std::io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn stdin(&mut self, _environ: &gateway_core::Environ) -> gateway_core::Body {
        gateway_core::Body::empty()
    }

    fn stderr(&self) -> gateway_core::ErrorStream {
        gateway_core::ErrorStream::null()
    }
}

fn main() {}
