"""bleak backends beyond bleak's own (one module each, imported only when configured)."""
