"""CNN Explorer: Home / Predict. Run with ``streamlit run app.py`` (or ``make run``).

Every page is its own script in ``pages/`` (Streamlit's pages mechanism, not ``st.navigation``):
a bookmark or reload that opens ``/model`` first on a fresh server must work
(tests/e2e/test_foundation.py).
"""

import csv
import io

import streamlit as st

from engine.predictions import cached_predict
from ui.model_report import similar_images
from ui.page import page
from ui.report import report_section
from ui.errors import shown_errors
from ui.sidebar import PAGES
from ui.text import md_escape
from ui.widgets import prefetch_charts, top_k_rows

EXPLAINER = """
A **convolutional neural network** (CNN) looks at an image as a grid of numbers: three numbers
(red, green, blue) for every pixel. Its first layers slide small filters over the image and react
to simple things such as edges and colours. Later layers combine those reactions into parts
(corners, curves, textures) and then into whole objects. The last layer turns all of that into
one score per class; the bars below show the five classes the network finds most likely, as
probabilities that add up to 100 %.

Pick another model or other images in the sidebar on the left. Upload your own photos, too.
"""

selection = page("CNN Explorer", EXPLAINER, icon=":material/home:")
st.markdown("Look inside convolutional neural networks: what they predict, how they are built "
            "and what each layer computes.")
cols = st.columns(len(PAGES) - 1)
for col, (script, title, icon) in zip(cols, PAGES[1:]):
    col.page_link(script, label=title, icon=icon)

model = selection.model
if model is None:
    st.stop()
st.subheader("Predictions")
if model.name == "demo":
    st.caption("The demo model knows only six shapes (" + ", ".join(model.class_names) + "), so it "
               "calls any photo one of them. Pick an ImageNet model in the sidebar for photos.")
if not selection.images:
    st.info("Choose or upload images in the sidebar.")
else:
    with shown_errors("Predicting failed: "):
        with st.spinner("Predicting..."):
            results = cached_predict(model, selection.arrays, top=5)
        per_row = 3
        for start in range(0, len(results), per_row):
            cols = st.columns(per_row)
            for col, (_, label, image), top in zip(cols, selection.images[start:start + per_row],
                                                   results[start:start + per_row]):
                with col.container(border=True):
                    st.image(image, caption=label, width="stretch")
                    name, p = top[0]
                    st.markdown(f"**{md_escape(name)}** · {p:.1%}")
                    top_k_rows(top)
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["image", "rank", "class", "probability"])
        for (_, label, _), top in zip(selection.images, results):
            writer.writerows([label, rank, name, f"{p:.6f}"]
                             for rank, (name, p) in enumerate(top, 1))
        st.download_button("Download predictions (CSV)", table.getvalue(), "predictions.csv",
                           "text/csv", icon=":material/download:")
    report_section(selection, key="home")
similar_images(selection, key="home")
prefetch_charts()
