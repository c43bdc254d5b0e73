-- One database per process, as in the embedded demo.
CREATE USER treaty PASSWORD 'treaty';
CREATE DATABASE treaty OWNER treaty;
CREATE DATABASE orders OWNER treaty;
CREATE DATABASE inventory OWNER treaty;
