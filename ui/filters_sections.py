"""The Filters page's forms: the optimisation settings (starting at the engine's defaults,
``engine.actmax.views.form_defaults``) and the choice of filters or classes.

Every widget remembers its value across pages (``state.durable``); the settings sit in a
``presenter.technical`` block.
"""

from __future__ import annotations

import streamlit as st

from engine import actmax
from engine.actmax.views import MODES, OBJECTIVES, PARAMS, form_defaults, size_choices
from ui import presenter, state


def settings_form(model, objective_choice: bool) -> dict:
    """The optimisation settings, as ``actmax.plan`` arguments; ``objective_choice``: offer
    channel or neuron (a layer's filters; classes have their own objective)."""
    d = form_defaults(actmax.default_size(model)[0])
    with presenter.technical("am_settings"), st.expander("Settings", icon=":material/tune:"):
        c1, c2, c3, c4 = st.columns(4)
        steps = c1.number_input("Steps", 0, 2048, step=16, **state.durable("am_steps", d["steps"]),
                                help="Optimisation steps per image: more gives stronger, "
                                     "crisper pictures and takes longer.")
        size = c2.selectbox("Image size (pixels)", size_choices(model),
                            **state.durable("am_size", d["size"]),
                            help="Side of the square image. Convolution layers take any size; "
                                 "class scores get it resized to the model's input.")
        lr = c3.number_input("Learning rate", 0.005, 2.0, step=0.05, format="%.3f",
                             **state.durable("am_lr", d["learning_rate"]),
                             help="How far each step moves (Adam), decayed to a tenth along "
                                  "the steps.")
        param = c4.radio("Parameterisation", list(PARAMS), format_func=PARAMS.get,
                         **state.durable("am_param", d["param"]),
                         help="Fourier: the image's frequencies, scaled like natural images "
                              "(Olah et al., 2017). Pixels: every pixel directly.")
        c1, c2, c3, c4 = st.columns(4)
        jitter = c1.slider("Random shift (pixels)", 0, 32,
                           **state.durable("am_jitter", d["jitter"]))
        scale = c2.slider("Random zoom (±)", 0.0, 0.5, step=0.05,
                          **state.durable("am_scale", d["scale"]))
        rotate = c3.slider("Random turn (± degrees)", 0, 45, **state.durable("am_rotate",
                                                                             d["rotate"]))
        decorrelate = c4.toggle("Decorrelate colours", **state.durable("am_decorrelate",
                                                                       d["decorrelate"]),
                                help="Change colours along natural images' main colour axes.")
        penalties = _penalties(d)
        coarse = st.toggle("Coarse to fine: first half of the steps at half size",
                           **state.durable("am_coarse", d["coarse_to_fine"]),
                           help="Faster on large images; trained networks respond to patterns "
                                "at the scale they learned, so the pictures end weaker.")
        objective = d["objective"]
        if objective_choice:
            objective = st.radio("What to maximise", list(OBJECTIVES), format_func=OBJECTIVES.get,
                                 horizontal=True, **state.durable("am_objective", objective))
    return dict(objective=objective, steps=int(steps), size=int(size), learning_rate=float(lr),
                param=param, jitter=int(jitter), scale=float(scale), rotate=float(rotate),
                decorrelate=bool(decorrelate), coarse_to_fine=bool(coarse), **penalties)


def _penalties(d: dict) -> dict:
    """The regularisers' weights and the seed (the form's third row)."""
    c1, c2, c3, c4 = st.columns(4)
    tv = c1.number_input("Total variation weight", 0.0, 100.0, step=0.5,
                         **state.durable("am_tv", d["tv"]),
                         help="Subtracts this times the mean difference between neighbouring "
                              "pixels: smoother pictures.")
    l2 = c2.number_input("L2 weight", 0.0, 100.0, step=0.5, **state.durable("am_l2", d["l2"]),
                         help="Subtracts this times the squared distance from grey: calmer "
                              "colours.")
    blur = c3.number_input("Blur weight", 0.0, 100.0, step=0.5,
                           **state.durable("am_blur", d["blur"]),
                           help="Subtracts this times the distance from a blurred copy.")
    seed = c4.number_input("Seed", 0, 10_000, **state.durable("am_seed", d["seed"]))
    return dict(tv=float(tv), l2=float(l2), blur=float(blur), seed=int(seed))


def pick_units(n: int, key: str, names: list[str] | None = None,
               default_mode: str = "all") -> list[int]:
    """All, a range, or chosen filters (or, with ``names``, classes) out of ``n``."""
    noun = "classes" if names else "filters"
    mode = st.radio(f"Which {noun}", list(MODES), horizontal=True,
                    format_func=lambda m: MODES[m].replace("filters", noun),
                    **state.durable(f"am_mode_{key}", default_mode))
    if mode == "range" and n > 1:
        low, high = st.session_state.get(f"am_range_{key}", (0, min(n - 1, 15)))
        st.session_state[f"am_range_{key}"] = (min(low, n - 1), min(high, n - 1))
        low, high = st.slider(f"Range of {noun}", 0, n - 1,
                              **state.durable(f"am_range_{key}", (0, 0)))
        return list(range(low, high + 1))
    if mode == "pick":
        chosen = [u for u in st.session_state.get(f"am_pick_{key}", [0]) if u < n] or [0]
        st.session_state[f"am_pick_{key}"] = chosen
        picked = st.multiselect(f"Choose {noun}", list(range(n)),
                                format_func=(lambda u: f"{u}: {names[u]}") if names else str,
                                **state.durable(f"am_pick_{key}", chosen))
        return sorted(picked)
    return list(range(n))
