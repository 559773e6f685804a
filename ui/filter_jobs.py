"""The server's activation-maximisation jobs: one registry per process, shared by every session,
so a layer keeps computing when its page is left and a second viewer joins the running job."""

from __future__ import annotations

import streamlit as st

from engine.actmax.jobs import JobRegistry


@st.cache_resource(show_spinner=False)
def job_registry() -> JobRegistry:
    """One job computes at a time: on a CPU two at once only take twice as long each."""
    return JobRegistry(max_running=1)
