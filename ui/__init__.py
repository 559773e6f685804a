"""Streamlit glue shared by the pages: state, caching, sidebar pickers, figures, errors."""
