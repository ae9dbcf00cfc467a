// placeholder: being written
export {};
