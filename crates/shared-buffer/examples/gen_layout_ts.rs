//! Prints `ts/channel/layout.ts`, the TypeScript copy of the channel layout constants, generated
//! from `src/channel/layout.rs` (`make gen-layout` writes it into place).

fn main() {
    print!("{}", shared_buffer::channel::layout::typescript());
}
