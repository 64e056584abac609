"""The appliance's uplink: events and sealed recordings to the collector over MQTT."""
