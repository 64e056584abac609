"""The collector: the server side that receives recordings and events from appliances."""
