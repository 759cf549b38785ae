"""leadflow: get lead files of any size into Marketo through its Bulk Lead Import API."""
