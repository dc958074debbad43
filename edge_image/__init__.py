"""hemhub: edge_image."""
