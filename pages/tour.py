"""Tour: seven short steps through what a CNN does to the visitor's image, in plain words.

Every picture and number is computed now, by the same engine as the other pages, on the image
and model chosen in the sidebar; nothing is a stored picture. The step lives under the durable
key ``tour_step``, so it holds across reruns and page switches.
"""

import streamlit as st

from ui import state
from ui.errors import shown_errors
from ui.page import page
from ui.sidebar import PAGES
from ui.tour_steps import SHOW, STEPS

EXPLAINER = """
Seven short steps, each computed now on **your** image by the network chosen in the sidebar:
how the picture becomes numbers, how one filter slides over it, what the layers see, what the
network answers, where it looks, what its filters like, and how a network learns at all.
Use **Next** and **Previous**; change the image or the model in the sidebar at any time and the
step is computed again. For a projector, switch on **Presenter mode** in the sidebar.
"""


def _go(delta: int) -> None:
    st.session_state["tour_step"] = min(max(st.session_state["tour_step"] + delta, 0),
                                        len(STEPS) - 1)


def _navigation(where: str) -> None:
    step = st.session_state["tour_step"]
    left, middle, right = st.columns([1.4, 4, 1.4], vertical_alignment="center")
    left.button("Previous", key=f"tour_prev_{where}", icon=":material/arrow_back:",
                on_click=_go, args=(-1,), disabled=step == 0, width="stretch")
    right.button("Next", key=f"tour_next_{where}", icon=":material/arrow_forward:",
                 on_click=_go, args=(1,), disabled=step == len(STEPS) - 1, type="primary",
                 width="stretch")
    if where == "top":
        middle.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)}")
        st.markdown(" · ".join(f":blue-background[**{i + 1} {name}**]" if i == step
                               else f"{i + 1} {name}" for i, name in enumerate(STEPS)))


def _image(selection):
    """The image the steps work on: ``(image id, picture)`` of one chosen in the sidebar."""
    labels = {i: label for i, label, _ in selection.images}
    images = {i: picture for i, _, picture in selection.images}
    if st.session_state.get("tour_image") not in images:
        st.session_state["tour_image"] = next(iter(images))
    image_id = next(iter(images))
    if len(images) > 1:
        image_id = st.selectbox("Your image", list(images), format_func=labels.get,
                                **state.durable("tour_image", image_id),
                                help="The images chosen in the sidebar.")
    return image_id, images[image_id]


def _step(selection, step: int) -> None:
    """The step's own content; the last one needs no image."""
    model = selection.model
    needs_image = step < len(STEPS) - 1
    if needs_image and (model is None or not selection.images):
        if model is not None:
            st.info("Choose or upload an image in the sidebar: the tour works on it.",
                    icon=":material/info:")
        return
    image_id, image = _image(selection) if needs_image else (None, None)
    with shown_errors(f"Step {step + 1} failed: "):
        SHOW[step](model, image_id, image)


def _where_next() -> None:
    st.page_link("pages/train.py", label="Next: the small-data lesson. Four runs side by side "
                 "show why a pretrained base wins when there are few images",
                 icon=":material/science:", query_params=state.url_params())
    st.markdown("**Where next?** Each page goes deeper into one of the steps:")
    others = [p for p in PAGES if p[0] != "pages/tour.py"]
    for col, (script, title, icon) in zip(st.columns(len(others)), others):
        col.page_link(script, label=title, icon=icon, query_params=state.url_params())


selection = page("Tour", EXPLAINER, icon=":material/tour:")
st.session_state.setdefault("tour_step", 0)
_go(0)  # a step kept from an older tour with more steps
_navigation("top")
step = st.session_state["tour_step"]
st.header(f"{step + 1}. {STEPS[step]}", anchor=False)
_step(selection, step)
st.divider()
_navigation("bottom")
if step == len(STEPS) - 1:
    _where_next()
