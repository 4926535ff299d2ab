//! C4: a `Gateway` without `stdin` (one of wsgiref's abstract methods)
//! does not compile.

struct NoOp;

impl gateway_core::Gateway for NoOp {
    async fn write(&mut self, _data: bytes::Bytes) -> std::io::Result<()> {
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn stderr(&self) -> gateway_core::ErrorStream {
        gateway_core::ErrorStream::null()
    }

    fn add_cgi_vars(&mut self, _environ: &mut gateway_core::Environ) {}
}

fn main() {}
