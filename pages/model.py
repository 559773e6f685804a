"""Model: the architecture as a table, its totals and a diagram of the layer stack."""

import streamlit as st

from engine.models.architecture import layer_table, model_totals
from engine.models.summary import layer_records, records_csv, totals_metrics
from ui.errors import shown_errors
from ui.figures import layer_stack, shape_profile
from ui import presenter
from ui.page import page

EXPLAINER = """
A CNN is a stack of **layers**; each turns a block of numbers into another block.

- **Conv2D** (convolution) layers slide small filters over their input. Each filter makes one
  *channel* (feature map). The **receptive field** of a layer is the square of input pixels one of
  its numbers can "see"; it grows with depth, so deep layers respond to large patterns.
- **Pooling** layers halve the size of the maps: the picture gets smaller while the number of
  channels grows, which is the shape you see in the diagram.
- **Dense** layers at the end combine everything into one score per class.
- **Parameters** are the numbers learned in training; **FLOPs** count the arithmetic for one image.
"""

selection = page("Model", EXPLAINER, icon=":material/account_tree:")
model = selection.model
if model is None:
    st.stop()

with shown_errors("Reading the architecture failed: "):
    rows = layer_table(model.keras_model)
    for col, (label, value) in zip(st.columns(5), totals_metrics(model_totals(model.keras_model))):
        col.metric(label, value)
    st.caption(f"Input {model.input_size[0]}x{model.input_size[1]} RGB, preprocessing "
               f"'{model.preprocessing}', {model.n_classes} classes.")

    st.subheader("The layer stack")
    presenter.chart(layer_stack(rows), key="layer_stack")
    presenter.chart(shape_profile(rows), key="shape_profile")

    with presenter.technical("model_table"):
        st.subheader("Every layer")
        show_all = st.toggle("Show every layer (not only convolution, pooling and dense layers)",
                             value=True)
        table = layer_records(rows, show_all)
        st.dataframe(table, hide_index=True, width="stretch", height=min(38 + 35 * len(table), 600),
                     column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                    "FLOPs": st.column_config.NumberColumn(format="localized")})
        st.download_button("Download the table (CSV)", records_csv(table),
                           f"{model.name}_layers.csv", "text/csv", icon=":material/download:")
